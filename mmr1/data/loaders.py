"""Built-in dataset loaders: ``json``, ``hf`` and the synthetic ``shapes`` set."""

from mmr1.data.hf_loader import load_hf
from mmr1.data.json_loader import load_json
from mmr1.data.synthetic import load_shapes
from mmr1.hookspecs import hookimpl


@hookimpl
def register_datasets(register):
    register("json", load_json)
    register("hf", load_hf)
    register("shapes", load_shapes)
