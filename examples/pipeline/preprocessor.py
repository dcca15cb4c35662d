"""Actor 1 of the seeds' pipeline: clean the text and count its words, keeping what came in."""


def process(payload: dict) -> dict:
    text = payload.get("text", "")
    return {
        **payload,
        "cleaned_text": text.strip().lower(),
        "word_count": len(text.split()),
    }
