"""The course's two neural networks on hashed words, in torch, sized to the data so a CPU copes.

    net = MLPRegressor.course_nn(rows=4_000, seed=42)     # NeuralNetwork: hashed words -> 128 -> 64 -> 1, MSE
    net = MLPRegressor.course_deep(rows=4_000, seed=42)   # -> width -> residual blocks -> 1, L1
    net.fit(x, np.log1p(prices)); net.predict(x)          # x: scipy sparse rows (HashingVectorizer)

The course's week 6 network stacks eight Linear layers (inputs -> 128 -> 64, five 64 -> 64, -> 1);
`NeuralNetwork` here keeps its first two and its last (three weight layers): on the catalog's few
thousand rows the five middle layers did not lower the error (bench/README.md, "Baselines"), and the
deep residual network is where this lab tries depth. Notebook 3 writes `NeuralNetwork` and
`train_network` out in cells; tests/test_notebooks.py keeps them equal to these.

The course trained its deep network (width 4,096, ten layers) on 800k items on a GPU. Here the
width grows with the training rows (128 for the catalog's 4,000, 512 for lite's 20k, 4,096 for
full's 800k) and the epochs shrink as rows grow, so the catalog fits in seconds on two cores.
The first layer reads the sparse word counts directly (an EmbeddingBag), which is the same sum
a dense Linear layer computes on them, without multiplying thousands of zeros. A network trains
on a CUDA GPU when there is one (full's 800k rows need it), else on one CPU thread.

torch is imported here at the top: pricer.baselines imports this module only inside the
functions that fit a network, so `import pricer` stays light.
"""

import contextlib
import math

import numpy as np
import torch
from torch import nn

from pricer.evaluator import tqdm  # tqdm.auto, imported without its no-ipywidgets warning

STEPS = 1_250  # optimizer steps to aim for: 20 epochs of the catalog; more overfit it


class SparseLinear(nn.Module):
    """A Linear layer over sparse rows given as CSR (indices, offsets, values)."""

    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.bag = nn.EmbeddingBag(inputs, outputs, mode="sum")
        self.bias = nn.Parameter(torch.zeros(outputs))
        bound = 1 / math.sqrt(inputs)  # nn.Linear's initialisation, for the same start
        nn.init.uniform_(self.bag.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, rows) -> torch.Tensor:
        indices, offsets, values = rows
        return self.bag(indices, offsets, per_sample_weights=values) + self.bias


class ResidualBlock(nn.Module):
    """The course's block: two Linear + LayerNorm layers with a skip connection around them."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.block = nn.Sequential(
            nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, width), nn.LayerNorm(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.block(x) + x)


class NeuralNetwork(nn.Module):
    """The course's network on hashed words, three weight layers of its eight: words -> 128 -> 64 -> 1."""

    def __init__(self, input_size):
        super().__init__()
        self.layer1 = SparseLinear(input_size, 128)  # the course's nn.Linear(input_size, 128), on sparse rows
        self.layer2 = nn.Linear(128, 64)
        self.layer3 = nn.Linear(64, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        output1 = self.relu(self.layer1(x))
        output2 = self.relu(self.layer2(output1))
        return self.layer3(output2).squeeze(-1)  # one predicted (standardised log) price per row


class Network(nn.Module):
    """Sparse input layer, then a stack of dense layers, then one output: the predicted log price."""

    def __init__(self, inputs: int, first: int, body: nn.Module, last: int):
        super().__init__()
        self.input = SparseLinear(inputs, first)
        self.body = body
        self.output = nn.Linear(last, 1)

    def forward(self, rows) -> torch.Tensor:
        return self.output(self.body(self.input(rows))).squeeze(-1)


def deep_width(rows: int) -> int:
    """Residual width for this many training rows: rows ** 0.6 as a power of two, 64 to 4,096."""
    return int(min(4096, max(64, 2 ** round(0.6 * math.log2(rows)))))


class MLPRegressor:
    """A torch network with scikit-learn's fit / predict, seeded and deterministic on CPU."""

    def __init__(self, build, loss: str, epochs: int, seed: int, batch_size: int = 64,
                 lr: float = 1e-3, weight_decay: float = 0.0, name: str = "network"):
        self.build, self.loss, self.epochs, self.seed = build, loss, epochs, seed
        self.batch_size, self.lr, self.weight_decay, self.name = batch_size, lr, weight_decay, name

    @classmethod
    def course_nn(cls, rows: int, seed: int) -> "MLPRegressor":
        """The course's 'neural network' (NeuralNetwork): hashed words -> 128 -> 64 -> 1, MSE, Adam."""
        return cls(NeuralNetwork, "mse", epochs=_epochs(rows, steps=STEPS), seed=seed, name="neural_network")

    @classmethod
    def course_deep(cls, rows: int, seed: int, layers: int = 10, dropout: float = 0.2) -> "MLPRegressor":
        """The course's deep network: input layer, layers - 2 residual blocks, output; L1 loss, AdamW."""
        width = deep_width(rows)

        def build(inputs):
            blocks = [ResidualBlock(width, dropout) for _ in range(layers - 2)]
            head = [nn.LayerNorm(width), nn.ReLU(), nn.Dropout(dropout)]
            return Network(inputs, width, nn.Sequential(*head, *blocks), width)

        return cls(build, "l1", epochs=_epochs(rows, steps=STEPS), seed=seed, weight_decay=0.01,
                   name="deep_neural_network")

    def fit(self, x, y) -> "MLPRegressor":
        """Train on sparse rows x and targets y (log prices), standardised so one lr fits all data."""
        y = np.asarray(y, dtype=np.float32)
        self.mean, self.std = float(y.mean()), float(y.std()) or 1.0
        target = torch.from_numpy((y - self.mean) / self.std)
        order = np.random.default_rng(self.seed)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"  # full's 800k rows need a GPU
        with torch.random.fork_rng(), _one_thread():  # seeded, and the caller's RNG left as it was
            torch.manual_seed(self.seed)
            self.net = self.build(x.shape[1]).to(self.device)
            optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.weight_decay,
                                          fused=True)  # one kernel, not a dozen per step: 3x faster here
            batches = max(1, x.shape[0] // self.batch_size)
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs * batches)
            loss_fn = nn.L1Loss() if self.loss == "l1" else nn.MSELoss()
            train_network(self.net, x, target, loss_fn, optimizer, schedule, self.epochs, batches, order, self.device)
        return self

    def predict(self, x) -> np.ndarray:
        """Targets (log prices) for sparse rows x."""
        with torch.no_grad(), _one_thread():
            chunks = (x[i:i + 1024] for i in range(0, x.shape[0], 1024))
            out = torch.cat([self.net(sparse_rows(chunk, self.device)).cpu() for chunk in chunks])
        return out.numpy().astype(float) * self.std + self.mean


def train_network(model, x, y, loss_function, optimizer, schedule, epochs, batches, shuffle, device="cpu"):
    """The training loop: every epoch, the rows in a new random order, one optimizer step per batch."""
    model.train()
    for epoch in tqdm(range(epochs), desc="training", leave=False):
        for batch in np.array_split(shuffle.permutation(x.shape[0]), batches):
            optimizer.zero_grad()
            outputs = model(sparse_rows(x[batch], device))
            loss = loss_function(outputs, y[batch].to(device))
            loss.backward()
            optimizer.step()
            schedule.step()  # the learning rate follows a cosine down to 0 over all the steps
    model.eval()


def _epochs(rows: int, steps: int, batch_size: int = 64, most: int = 40) -> int:
    """Enough epochs for about `steps` optimizer steps: many on the catalog, one on 800k rows."""
    return int(min(most, max(1, round(steps * batch_size / rows))))


@contextlib.contextmanager
def _one_thread():
    """One CPU thread: layers this small run faster alone than split (and far faster when busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def sparse_rows(x, device: str = "cpu"):
    """scipy CSR rows as the (indices, offsets, values) an EmbeddingBag reads."""
    x = x.tocsr()
    arrays = x.indices.astype(np.int64), x.indptr[:-1].astype(np.int64), x.data.astype(np.float32)
    return tuple(torch.from_numpy(a).to(device) for a in arrays)
