"""Actor 2: a class handler. The "model" is loaded once, in __init__, not per message.

A keyword model stands in for a real one so the example runs anywhere; see
examples/sklearn for a trained scikit-learn model served the same way.
"""

KEYWORDS = {
    "greeting": {"hello", "hi", "hey", "good morning"},
    "farewell": {"bye", "goodbye", "see you"},
}


class TextClassifier:
    def __init__(self, model_path: str = "/models/default"):
        self.keywords = KEYWORDS
        print(f"Model loaded from {model_path}")  # goes to the runtime's log, not the socket

    def process(self, payload: dict) -> dict:
        text = payload.get("cleaned_text", "")
        for category, words in self.keywords.items():
            if any(word in text for word in words):
                return {**payload, "category": category, "confidence": 0.95}
        return {**payload, "category": "other", "confidence": 0.5}
