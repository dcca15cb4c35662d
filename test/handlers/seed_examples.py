"""The seeds' handler examples, as written. Only the model loaders they call are defined here,
as deterministic stand-ins (no model files in tests)."""


class _FakeModel:
    def predict(self, text):
        return {"category": "greeting" if "hello" in text else "other", "score": 0.95}


class _FakeLLM:
    def judge(self, text):
        return 0.9 if "good" in text else 0.3


def load_model(model_path):
    return _FakeModel()


def load_llm(model_path):
    return _FakeLLM()


# seeds/003: Mutating Payloads, Function Handler
def preprocess(payload: dict) -> dict:
    text = payload.get("text", "")
    return {
        **payload,  # Preserve input
        "cleaned_text": text.strip().lower(),
        "word_count": len(text.split())
    }


# seeds/003: Class Handler
class TextClassifier:
    def __init__(self, model_path: str = "/models/default"):
        # Loaded once at pod startup, not per message
        self.model = load_model(model_path)
        print(f"Model loaded from {model_path}")

    def process(self, payload: dict) -> dict:
        text = payload.get("cleaned_text", "")
        prediction = self.model.predict(text)

        # Add classification results to payload
        return {
            **payload,  # Keep preprocessor results
            "category": prediction["category"],
            "confidence": prediction["score"]
        }


# seeds/003: Fan-Out Pattern
def split_chunks(payload: dict) -> list:
    # Split text into chunks
    chunks = payload["text"].split("\n")

    # Each chunk becomes a separate envelope
    return [
        {**payload, "chunk_id": i, "chunk_text": chunk}
        for i, chunk in enumerate(chunks)
    ]


# seeds/003: Abort Pattern (annotation `dict | None` is 3.10+ syntax in the seed; left as a comment)
def skip_done(payload: dict):  # -> dict | None
    # Skip processing if already done
    if payload.get("already_processed"):
        return None  # Routes to happy-end, no further processing

    # Normal processing
    return {**payload, "result": "..."}


# seeds/003: Advanced: Envelope Mode (Dynamic Routing)
class LLMJudge:
    def __init__(self, threshold: float = 0.8):
        self.model = load_llm("/models/judge")
        self.threshold = float(threshold)

    def process(self, envelope: dict) -> dict:
        payload = envelope["payload"]

        # Run LLM judge
        score = self.model.judge(payload["llm_response"])
        payload["judge_score"] = score

        # Dynamically modify route based on score
        route = envelope["route"]
        if score < self.threshold:
            # Low quality response - add refinement step
            route["actors"].insert(
                route["current"] + 1,  # After current position
                "llm-refiner"  # Extra step
            )

        # Increment current pointer
        route["current"] += 1

        return envelope


# seeds/000: Envelope Mode
def envelope_mode(envelope: dict) -> dict:
    # Modify route dynamically
    envelope["route"]["actors"].append("extra-step")
    envelope["route"]["current"] += 1
    envelope["payload"]["processed"] = True
    return envelope


# seeds/000: Dynamic routing
def dynamic_routing(envelope: dict) -> dict:
    if envelope["payload"]["priority"] == "high":
        envelope["route"]["actors"].insert(
            envelope["route"]["current"] + 1,
            "priority-handler"
        )
    envelope["route"]["current"] += 1
    return envelope


# seeds/000: Class Handler
class Processor:
    def __init__(self, model_path: str = "/models/default"):
        self.model = load_model(model_path)  # Init once

    def process(self, payload: dict) -> dict:
        return {"result": self.model.predict(payload["text"])}


# seeds/002: smart_router
def smart_router(envelope):
    payload = envelope["payload"]
    route = envelope["route"]

    # Add conditional actors based on payload
    if payload.get("needs_validation"):
        # Add validator actor after current processing
        route["actors"] = route["actors"] + ["validator", "finalizer"]

    return {
        "payload": {"processed": True, **payload},
        "route": route,
        "headers": envelope.get("headers", {})
    }


# seeds/002: process_with_context
def process_with_context(envelope):
    route = envelope["route"]
    current_idx = route["current"]

    # Check if this is the last actor
    is_final = (current_idx == len(route["actors"]) - 1)

    result = {
        "payload": {"is_final_step": is_final},
        "route": route
    }

    if is_final:
        # Add final cleanup actor
        result["route"]["actors"].append("cleanup")

    return result


# seeds/001: single response with validation
def validate_text(payload):
    if "text" not in payload:
        raise ValueError("Missing required field: text")
    return {"processed_text": payload["text"].upper(), "model": "my-model-v1"}
