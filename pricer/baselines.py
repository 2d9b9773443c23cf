"""Traditional baselines: the predictors a fine-tuned model has to beat, fitted on Items in seconds.

    from pricer.baselines import fit_all, fit_baseline, BASELINES
    predictors = fit_all(train, max_rows=preset.train_rows)    # {"constant_mean": ..., ...}
    evaluate(predictors["ridge_bow"], test)                    # any of them, through the Tester
    deep = fit_baseline("deep_neural_network", train)          # or one at a time

Each is the course's week-6 baseline on our data: a constant, linear regression on a few hand
features, bag-of-words + ridge, a random forest, gradient boosting (scikit-learn's; XGBoost too
when installed), the course's neural network on hashed words, and its deep residual network.
Everything but the constants and linear regression learns log price (prices span 1 to 999
dollars; errors in log space weigh a $10 item as much as a $500 one).

Baselines train on, and predict for, `Item`s or prompt rows {"prompt", "completion"} alike.
Items give the model their summary; prompt rows the summary inside the prompt, cut at the
preset's token cap. Train on the view you test on: Items' full summaries carry the weight and
more words, which a cut prompt lacks (bench/README.md, "Baselines", has the figures: fitted on
Items and scored on prompt rows, every learner loses).
Weight comes from `Item.weight`, else a "Weight: N pounds" line in the text, else it is missing.
Neural networks live in pricer/neural.py.
"""

import math
import re
import time
from collections.abc import Mapping

import numpy as np

from pricer.evaluator import tqdm  # tqdm.auto, imported without its no-ipywidgets warning
from pricer.items import DataError, check_prompt_row
from pricer.prompts import text_of  # also the frontier models' and the human baseline's reading

SEED = 42
WORDS = 2_000  # bag-of-words vocabulary: the 2,000 commonest words and word pairs cover the catalog
HASHED = 5_000  # the course's HashingVectorizer width for its neural networks
WEIGHT = re.compile(r"weight:?\s*(\d+(?:\.\d+)?)\s*(pounds?|lbs?|ounces?|oz|kilograms?|kg|grams?|g)\b", re.I)
TO_POUNDS = {"p": 1.0, "l": 1.0, "o": 1 / 16, "k": 2.2046, "g": 0.0022046}  # by the unit's first letter


def weight_of(datapoint) -> float:
    """Pounds from Item.weight or a 'Weight: N unit' line in the text; NaN when neither says."""
    weight = None if isinstance(datapoint, Mapping) else getattr(datapoint, "weight", None)
    if weight is None:
        match = WEIGHT.search(text_of(datapoint))
        if match:
            weight = float(match.group(1)) * TO_POUNDS[match.group(2)[0].lower()]
    return float("nan") if weight is None or not math.isfinite(weight) else float(weight)


def price_of(datapoint, where: str = "row") -> float:
    """The true price: an Item's price, or a prompt row's completion; DataError naming the row if neither."""
    if isinstance(datapoint, Mapping):
        return float(check_prompt_row(datapoint, where)["completion"])
    price = getattr(datapoint, "price", None)
    if not isinstance(price, (int, float)) or not math.isfinite(price):
        raise DataError(f"{where}: {type(datapoint).__name__} has no price to learn from (got {price!r})")
    return float(price)


def category_of(datapoint) -> str:
    """The category from Item.category or a 'Category:' line in the text; '' when neither says."""
    category = None if isinstance(datapoint, Mapping) else getattr(datapoint, "category", None)
    if not category:
        match = re.search(r"^Category:\s*(.+)$", text_of(datapoint), re.M)
        category = match.group(1) if match else ""
    return category.strip().replace("_", " ")


class Baseline:
    """A fitted baseline: `predictor(datapoint)` gives dollars, `predict_batch` many at once."""

    batch_size = 512  # sklearn predicts a chunk as fast as one row: let the Tester send chunks

    def __init__(self, name: str, features, model, log_target: bool, prices):
        self.__name__ = name  # the Tester's chart title: "ridge_bow" -> "Ridge Bow"
        self.features, self.model, self.log_target = features, model, log_target
        self.low, self.high = float(np.min(prices)), float(np.max(prices))  # no price outside training's
        self.fit_seconds, self.train_rows = 0.0, len(prices)

    def predict_batch(self, datapoints) -> list[float]:
        """Dollars for each datapoint, in order."""
        datapoints = list(datapoints)
        if not datapoints:
            return []
        raw = np.asarray(self.model.predict(self.features.transform(datapoints)), dtype=float).ravel()
        prices = np.expm1(raw) if self.log_target else raw
        return np.clip(prices, self.low, self.high).tolist()

    def __call__(self, datapoint) -> float:
        return self.predict_batch([datapoint])[0]

    def __repr__(self) -> str:
        return f"<{self.__name__}: fitted on {self.train_rows} items in {self.fit_seconds:.1f}s>"


class Nothing:
    """No features at all: the constants' input."""

    def fit(self, datapoints):
        return self

    def transform(self, datapoints):
        return np.zeros((len(datapoints), 1))


class Constant:
    """Predicts one number whatever it is shown."""

    def __init__(self, value: float):
        self.value = value

    def predict(self, x):
        return np.full(len(x), self.value)


class HandFeatures:
    """The course's 'simple features': log weight (+ a missing flag) and the category.

    Text length, which the course also used, is left out: on prompt rows, whose summaries are cut
    short, it is a length the model never saw in training (bench/README.md, "Baselines")."""

    def fit(self, datapoints):
        weights = np.array([weight_of(d) for d in datapoints])
        known = weights[np.isfinite(weights)]
        self.fill = float(np.median(known)) if len(known) else 1.0  # a typical weight, not zero
        self.categories = sorted({category_of(d) for d in datapoints} - {""})
        return self

    def transform(self, datapoints):
        rows = []
        for d in datapoints:
            weight, category = weight_of(d), category_of(d)
            rows.append([math.log1p(self.fill if math.isnan(weight) else weight), math.isnan(weight),
                         *(category == c for c in self.categories)])
        return np.asarray(rows, dtype=float)


class TextFeatures:
    """A scikit-learn text vectorizer applied to each datapoint's text."""

    def __init__(self, vectorizer):
        self.vectorizer = vectorizer

    def fit(self, datapoints):
        self.vectorizer.fit([text_of(d) for d in datapoints])
        return self

    def transform(self, datapoints):
        return self.vectorizer.transform([text_of(d) for d in datapoints])


def _bow(max_features=WORDS) -> TextFeatures:
    from sklearn.feature_extraction.text import CountVectorizer

    return TextFeatures(CountVectorizer(max_features=max_features, ngram_range=(1, 2), binary=True,
                                        stop_words="english"))


def _hashed() -> TextFeatures:
    """The course's NN input: 5,000 hashed binary word features, English stop words dropped."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return TextFeatures(HashingVectorizer(n_features=HASHED, stop_words="english", binary=True,
                                          alternate_sign=False, norm=None))


def _fit(name, data, prices, features, model, log_target=True) -> Baseline:
    features.fit(data)
    model.fit(features.transform(data), np.log1p(prices) if log_target else prices)
    return Baseline(name, features, model, log_target, prices)


def constant_mean(data, prices, seed):
    """The course's first baseline: always the average training price."""
    return Baseline("constant_mean", Nothing(), Constant(prices.mean()), False, prices)


def constant_median(data, prices, seed):
    """The median training price: the best single guess when scored by average absolute error."""
    return Baseline("constant_median", Nothing(), Constant(float(np.median(prices))), False, prices)


def linear_regression(data, prices, seed):
    """Linear regression on hand features, on price itself as the course fitted it."""
    from sklearn.linear_model import LinearRegression

    return _fit("linear_regression", data, prices, HandFeatures(), LinearRegression(), log_target=False)


def ridge_bow(data, prices, seed):
    """The course's bag-of-words + linear regression, with ridge's shrinkage for 2,000 word columns."""
    from sklearn.linear_model import Ridge

    return _fit("ridge_bow", data, prices, _bow(), Ridge(alpha=1.0))  # alpha 0.3-3 score alike on the catalog


def random_forest(data, prices, seed):
    """A random forest on the 500 commonest words (the course used word2vec vectors or BoW)."""
    from sklearn.ensemble import RandomForestRegressor

    forest = RandomForestRegressor(n_estimators=100, max_features=0.3,  # 30% of words per split: 3x faster
                                   min_samples_leaf=2, n_jobs=-1, random_state=seed)
    predictor = _fit("random_forest", data, prices, _bow(max_features=500), forest)
    forest.n_jobs = 1  # predict on one thread: threads sum the trees in any order, last digits vary
    return predictor


def gradient_boosting(data, prices, seed):
    """Boosted trees on the 500 commonest words: the course's XGBoost, from scikit-learn."""
    from sklearn.ensemble import GradientBoostingRegressor

    # The classic estimator, not HistGradientBoosting: it reads sparse words directly and runs on
    # one thread, where the histogram one took 3-18x longer on 2 busy cores for the same error.
    boost = GradientBoostingRegressor(n_estimators=300, max_depth=4, subsample=0.8, random_state=seed)
    return _fit("gradient_boosting", data, prices, _bow(max_features=500), boost)


def xgboost(data, prices, seed):
    """The course's XGBoost itself, when it is installed."""
    from xgboost import XGBRegressor

    boost = XGBRegressor(n_estimators=300, learning_rate=0.1, max_depth=6, random_state=seed, n_jobs=-1)
    return _fit("xgboost", data, prices, _bow(max_features=500), boost)


def neural_network(data, prices, seed):
    """The course's small MLP on 5,000 hashed words (pricer.neural)."""
    from pricer.neural import MLPRegressor

    return _fit("neural_network", data, prices, _hashed(), MLPRegressor.course_nn(len(data), seed))


def deep_neural_network(data, prices, seed):
    """The course's deep residual network on hashed words, sized to the data (pricer.neural)."""
    from pricer.neural import MLPRegressor

    deep = MLPRegressor.course_deep(len(data), seed)
    return _fit("deep_neural_network", data, prices, _hashed(), deep)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


BASELINES = {fit.__name__: fit for fit in (
    constant_mean, constant_median, linear_regression, ridge_bow, random_forest, gradient_boosting,
    *((xgboost,) if _installed("xgboost") else ()), neural_network, deep_neural_network)}


def fit_baseline(name: str, train, max_rows: int | None = None, seed: int = SEED) -> Baseline:
    """One named baseline fitted on the first `max_rows` training Items or prompt rows (all when None)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}: choose from {', '.join(BASELINES)}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be at least 1 (or None for every row), got {max_rows}")
    data = list(train)[:max_rows]
    if not data:
        raise ValueError(f"no training data to fit {name} on (got {len(list(train))}, max_rows={max_rows})")
    prices = np.array([price_of(d, where=f"training row {i}") for i, d in enumerate(data)])
    start = time.perf_counter()
    predictor = BASELINES[name](data, prices, seed)
    predictor.fit_seconds = time.perf_counter() - start
    return predictor


def fit_all(train, names=None, max_rows: int | None = None, seed: int = SEED) -> dict[str, Baseline]:
    """Every baseline (or those named), fitted in turn with a progress bar: {name: predictor}."""
    names = list(names or BASELINES)
    predictors = {}
    with tqdm(names, desc="fitting baselines") as bar:
        for name in bar:
            bar.set_postfix_str(name)
            predictors[name] = fit_baseline(name, train, max_rows, seed)
    return predictors

