"""The seeds' LLM-judge pattern in envelope mode, with a deterministic scorer in place of an LLM.

The handler receives the whole envelope. When the answer scores below the threshold it inserts
an `llm-refiner` step right after itself; in every case it moves `route.current` on by one.

    asya-runtime call --handler judge.LLMJudge.process --mode envelope --envelope \\
      '{"id": "1", "route": {"actors": ["llm", "judge", "post"], "current": 1},
        "payload": {"question": "what is the capital of france", "llm_response": "paris"}}'
"""


def overlap_score(question: str, answer: str) -> float:
    """Share of the answer's words that are not just the question repeated: a stand-in judge."""
    asked = set(question.lower().split())
    words = answer.lower().split()
    if not words:
        return 0.0
    return round(sum(1 for w in words if w not in asked) / len(words), 3)


class LLMJudge:
    def __init__(self, threshold: float = 0.8):
        self.threshold = float(threshold)

    def process(self, envelope: dict) -> dict:
        payload = envelope["payload"]
        score = overlap_score(payload.get("question", ""), payload.get("llm_response", ""))
        payload["judge_score"] = score

        route = envelope["route"]
        if score < self.threshold:
            route["actors"].insert(route["current"] + 1, "llm-refiner")
        route["current"] += 1
        return envelope
