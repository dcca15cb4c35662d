import numpy as np


def scalars(payload):
    return {"f32": np.float32(1.5), "i64": np.int64(7), "b": np.bool_(True), "f64": np.float64(0.25)}


def array(payload):
    return {"embedding": np.arange(6, dtype=np.float32).reshape(2, 3) / 2, "n": np.int32(6)}


def nan_array(payload):
    return {"v": np.array([1.0, np.nan, np.inf])}


def top_array(payload):
    return np.array([1, 2, 3])


def keyed(payload):
    """dict(zip(clf.classes_, proba)), the scikit-learn idiom: numpy keys, nested too."""
    classes = np.array([3, 1])
    return {"by_class": dict(zip(classes, np.array([0.25, 0.75]))), "flags": {np.bool_(True): [{np.int32(7): 1}]},
            "codec": payload.get("codec")}
