def show(msg):
    """With ASYA_INCLUDE_METADATA the handler gets the envelope; it returns a payload."""
    msg["route"]["actors"].append("ignored-mutation")
    return {"saw": msg}
