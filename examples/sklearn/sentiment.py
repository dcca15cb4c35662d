"""A real scikit-learn model served by the Asya runtime.

The classifier is trained once, in __init__, on a small generated data set (so the example runs
offline and the same way every time); a real deployment would load a fitted model from a file
there instead. `process` is called once per message with the payload.

    pip install scikit-learn
    asya-runtime call --handler sentiment.SentimentClassifier.process '{"text": "great service, loved it"}'
"""
import random

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

POSITIVE = ["great", "excellent", "loved", "wonderful", "fast", "friendly", "perfect", "happy", "amazing", "recommend"]
NEGATIVE = ["terrible", "awful", "hated", "slow", "rude", "broken", "refund", "disappointed", "worst", "never"]
NEUTRAL = ["the", "service", "product", "delivery", "it", "was", "and", "order", "staff", "really"]


def _training_set(n: int = 400, seed: int = 7):
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(POSITIVE if label == "positive" else NEGATIVE, 2) + rng.sample(NEUTRAL, 4)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


class SentimentClassifier:
    def __init__(self, seed: int = 7):
        texts, labels = _training_set(seed=seed)
        self.model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
        self.model.fit(texts, labels)
        print(f"trained on {len(texts)} examples; classes {list(self.model.classes_)}")

    def process(self, payload: dict) -> dict:
        if "text" not in payload:
            raise ValueError("payload needs a 'text' field")
        probabilities = self.model.predict_proba([payload["text"]])[0]  # a numpy array
        best = probabilities.argmax()
        return {
            **payload,
            "label": self.model.classes_[best],  # a numpy string
            "confidence": probabilities[best],  # a numpy float: the runtime sends it as a number
            "probabilities": dict(zip(self.model.classes_.tolist(), probabilities)),
        }
