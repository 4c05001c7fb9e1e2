"""The forward and backward graphs AOTAutograd hands to the compiler, for tests that check what a
compiled function keeps and calls."""
import torch


def aot_graphs(fn, *args):
    """(forward graph, backward graph) of AOTAutograd for ``fn(*args).sum()``, compiled with
    fullgraph; the compiled output is returned too."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs = []

    def keep(gm, example_inputs):
        graphs.append(gm)
        return make_boxed_func(gm.forward)

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=aot_autograd(fw_compiler=keep, bw_compiler=keep), fullgraph=True)
    out = compiled(*args)
    out.sum().backward()
    return graphs, out


def targets(gm):
    """The ops a graph calls, as strings (``fian_fast.bigru.default``, ...)."""
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


def saved_dtypes(forward):
    """The dtypes of the tensors a forward graph saves for its backward (its outputs after the
    first)."""
    saved = [n for n in forward.graph.nodes if n.op == "output"][0].args[0][1:]
    return [s.meta["val"].dtype for s in saved if hasattr(s, "meta") and isinstance(s.meta.get("val"), torch.Tensor)]
