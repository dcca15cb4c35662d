import nonexistent_dependency_for_asya_tests  # noqa: F401


def process(payload):
    return payload
