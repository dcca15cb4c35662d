"""Actor 3: a word-by-word "translation" to Spanish, enough to show the last enrichment step."""

WORDS = {"hello": "hola", "world": "mundo", "goodbye": "adiós", "friend": "amigo", "good": "buen", "morning": "día"}


def _translate(word: str) -> str:
    spanish = WORDS.get(word.lower(), word)
    return spanish.capitalize() if word[:1].isupper() else spanish


def process(payload: dict) -> dict:
    return {**payload, "translation": " ".join(_translate(w) for w in payload.get("text", "").split())}
