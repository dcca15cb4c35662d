"""The example handler `npm start` serves: enrich the payload, keep what came in."""


def process(payload: dict) -> dict:
    text = payload.get("text", "") if isinstance(payload, dict) else str(payload)
    return {
        **(payload if isinstance(payload, dict) else {"value": payload}),
        "cleaned_text": text.strip().lower(),
        "word_count": len(text.split()),
    }
