"""What a piece of code reads back from the device: on a GPU each such read waits for all queued work."""

READS = {"nonzero", "masked_select", "_local_scalar_dense", "is_nonzero", "item", "equal"}  # each a wait on a GPU


def device_reads(fn) -> list[str]:
    """The ops `fn` (forward and backward) runs that read a tensor's values back to the host: on a GPU each
    waits for all the work queued before it. A boolean index counts (it finds its positions with nonzero)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Reads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.split(".")[0]
            bool_index = name in ("index", "index_put", "index_put_") and any(
                isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in (args[1] if len(args) > 1 else ())
                if t is not None)
            if name in READS or bool_index:
                seen.append(name)
            return func(*args, **(kwargs or {}))

    with Reads():
        fn()
    return seen
