def process(payload):
    return {"from": __name__}


class Model:
    def predict(self, payload):
        return {"class_in": __name__}
