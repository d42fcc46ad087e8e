"""Writes pickles in the structure of NVIDIA's EG3D network pickles, without NVlabs code.

Persistent classes pickle as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, with
meta = {type, version, module_src, class_name, state}; the decoder and its Sequential are plain
classes referenced by import path, as in the real files.
"""

import collections
import io
import pickle
import types

from torch import nn

# Source text a genuine loader would exec; ours must never run it.
MODULE_SRC = "raise SystemExit('the pickled module source was executed')\n"


def _reconstruct_persistent_obj(meta):  # only referenced by name inside the pickle
    raise AssertionError("never called")


_reconstruct_persistent_obj.fake_global = ("torch_utils.persistence", "_reconstruct_persistent_obj")


class Persistent:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


def _fake_class(module: str, name: str) -> type:
    cls = type(name, (), {})
    cls.fake_global = (module, name)
    return cls


class EasyDict(dict):
    pass


EasyDict.fake_global = ("dnnlib.util", "EasyDict")

_NON_PERSISTENT = {"OSGDecoder": ("training.triplane", "OSGDecoder"), "Sequential": ("torch.nn.modules.container", "Sequential"),
                   "Softplus": ("torch.nn.modules.activation", "Softplus")}


def _module_tree(module: nn.Module, init_kwargs=None):
    state = {
        "training": False,
        "_parameters": collections.OrderedDict(module._parameters),
        "_buffers": collections.OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(module._non_persistent_buffers_set),
        "_modules": collections.OrderedDict((k, _module_tree(v)) for k, v in module._modules.items()),
    }
    name = type(module).__name__
    if name in _NON_PERSISTENT:
        obj = _fake_class(*_NON_PERSISTENT[name])()
        obj.__dict__.update(state)
        return obj
    if init_kwargs is not None:
        state["_init_kwargs"] = EasyDict(init_kwargs)
        state["_init_args"] = ()
    meta = {"type": "class", "version": 6, "module_src": MODULE_SRC, "class_name": name, "state": state}
    return Persistent(meta)


class _Pickler(pickle._Pickler):
    # The pure-Python pickler dispatches functions to the base save_global; route them to ours.
    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[types.FunctionType] = lambda self, obj: self.save_global(obj)

    def save_global(self, obj, name=None):
        fake = getattr(obj, "fake_global", None)
        if fake is None:
            return super().save_global(obj, name)
        self.save(fake[0])
        self.save(fake[1])
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


def eg3d_pickle_bytes(generator: nn.Module, init_kwargs: dict, extra=None) -> bytes:
    tree = _module_tree(generator, init_kwargs)
    tree.meta["state"]["rendering_kwargs"] = EasyDict(init_kwargs.get("rendering_kwargs", {}))
    tree.meta["state"]["neural_rendering_resolution"] = 64
    data = {"training_set_kwargs": {}, "G": tree, "D": None, "G_ema": tree, "augment_pipe": None}
    if extra:
        data.update(extra)
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=4).dump(data)
    return buffer.getvalue()
