"""Read back what a run wrote to TensorBoard (tests only)."""

from pathlib import Path


def tensorboard_scalars(folder) -> dict:
    """{tag: [(step, value), ...]} from every TensorBoard event file under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(Path(folder).rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {folder}"
    out: dict = {}
    for event_file in events:
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out
