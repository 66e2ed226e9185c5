"""HumanML3D layout, writer and datasets on a tiny synthetic dataset (design/momask.md §1.1–1.2)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from momask_model.data import (
    DatasetError,
    DatasetLayout,
    TextMotionDataset,
    VQWindowDataset,
    collate_text_motion,
    parse_text_line,
    simple_tokens,
    synthetic_walk,
    write_dataset,
)
from momask_model.motion.feature_layout import InvalidMotionError
from momask_model.motion.features import features_to_joints

# position frames per id (feature frames = one fewer)
FRAMES = {"000001": 121, "000002": 61, "000003": 31, "000004": 230, "000005": 151, "000006": 91}
CAPTIONS = {
    "000001": ["a person walks forward", "someone strolls and turns left"],
    "000002": ["a person walks briskly"],
    "000003": ["a short step"],
    "000004": ["a very long walk"],
    # one whole-clip caption plus a described sub-clip of 1.0 s .. 4.0 s = 60 frames
    "000005": ["a person walks in a circle", ("the person turns to the left", 1.0, 4.0)],
    "000006": [("only a part is described", 0.5, 3.0)],  # no whole-clip caption
}
SPLITS = {"train": list(FRAMES), "val": ["000002"], "test": ["000001"]}


def _motions():
    return {mid: synthetic_walk(n, turn_rate=0.3 * i - 0.6, phase=0.5 * i) for i, (mid, n) in enumerate(FRAMES.items())}


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("hml") / "HumanML3D", _motions(), CAPTIONS, SPLITS, tokenizer=simple_tokens)


@pytest.fixture(scope="module")
def normalizer(layout):
    return layout.normalizer()


# --- writer and layout -------------------------------------------------------------------------


def test_write_dataset_produces_the_humanml3d_layout(layout):
    for mid, n in FRAMES.items():
        feats = layout.load_features(mid)
        assert feats.shape == (n - 1, 263) and feats.dtype == np.float32
        assert np.abs(layout.load_joints(mid) - features_to_joints(feats)).max() < 1e-5
    assert layout.split_ids("train") == SPLITS["train"] and layout.split_ids("all") == list(FRAMES)
    mean, std = np.load(layout.mean_path), np.load(layout.std_path)
    assert mean.shape == std.shape == (263,) and mean.dtype == np.float32 and (std > 0).all()
    lines = layout.text_path("000001").read_text().splitlines()
    assert lines[0] == "a person walks forward#a/OTHER person/OTHER walks/OTHER forward/OTHER#0.0#0.0"


def test_read_texts_parses_tags(layout):
    anns = layout.read_texts("000005")
    assert [a.whole_clip for a in anns] == [True, False]
    assert (anns[1].f_tag, anns[1].to_tag) == (1.0, 4.0)
    assert anns[1].tokens[:2] == ("the/OTHER", "person/OTHER")


def test_parse_text_line_nan_tags_and_hash_in_caption():
    ann = parse_text_line("a man jumps#a/DET man/NOUN jump/VERB#nan#nan")
    assert ann.caption == "a man jumps" and ann.whole_clip and ann.tokens == ("a/DET", "man/NOUN", "jump/VERB")
    ann = parse_text_line("pose #1 held#pose/NOUN#0.5#2.0")
    assert ann.caption == "pose #1 held" and (ann.f_tag, ann.to_tag) == (0.5, 2.0)
    with pytest.raises(DatasetError, match="x.txt:3.*'abc'"):
        parse_text_line("walk#walk/VERB#abc#1.0", where="x.txt:3")


def test_mirrored_copies_are_written_with_swapped_captions(tmp_path):
    motions = {"a1": synthetic_walk(50, turn_rate=0.5)}
    lay = write_dataset(tmp_path / "m", motions, {"a1": ["turns left slowly"]}, {"train": ["a1"]},
                        mirror=True, tokenizer=simple_tokens)
    assert lay.split_ids("train") == ["a1", "Ma1"]
    assert lay.read_texts("Ma1")[0].caption == "turns right slowly"
    fa, fm = lay.load_features("a1"), lay.load_features("Ma1")
    assert np.allclose(fm[:, 0], -fa[:, 0], atol=1e-5)  # heading change mirrored


def test_write_dataset_rejects_bad_input(tmp_path):
    good = synthetic_walk(20)
    with pytest.raises(ValueError, match="'b'.*no captions"):
        write_dataset(tmp_path / "x", {"a": good, "b": good}, {"a": ["walk"]}, {"train": ["a"]})
    with pytest.raises(ValueError, match="ids without motion.*'zz'"):
        write_dataset(tmp_path / "x", {"a": good}, {"a": ["walk"]}, {"train": ["a", "zz"]})
    with pytest.raises(ValueError, match="plain file name"):
        write_dataset(tmp_path / "x", {"../a": good}, {"../a": ["walk"]}, {"train": []})
    nan = good.copy()
    nan[4, 3, 0] = np.nan
    with pytest.raises(InvalidMotionError, match="'a'.*NaN"):
        write_dataset(tmp_path / "x", {"a": nan}, {"a": ["walk"]}, {"train": ["a"]})
    with pytest.raises(InvalidMotionError, match=r"'a'.*\(20, 22, 2\)"):
        write_dataset(tmp_path / "x", {"a": good[..., :2]}, {"a": ["walk"]}, {"train": ["a"]})


def test_missing_and_corrupt_files_raise_dataset_error_naming_the_path(tmp_path, layout, normalizer):
    with pytest.raises(DatasetError, match="nowhere"):
        DatasetLayout(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="holdout.txt"):
        layout.split_ids("holdout")
    with pytest.raises(DatasetError, match=r"new_joint_vecs/999999\.npy"):
        layout.load_features("999999")
    with pytest.raises(DatasetError, match=r"texts/999999\.txt"):
        layout.read_texts("999999")

    broken = DatasetLayout(tmp_path)
    (tmp_path / "new_joint_vecs").mkdir()
    feats = layout.load_features("000001").copy()
    feats[3, 7] = np.nan
    np.save(broken.motion_path("nan"), feats)
    np.save(broken.motion_path("flat"), feats[0])
    (tmp_path / "train.txt").write_text("nan\n")
    with pytest.raises(ValueError, match=r"nan\.npy.*NaN"):
        VQWindowDataset(broken, "train", normalizer)
    with pytest.raises(DatasetError, match=r"flat\.npy.*2 dims"):
        broken.load_features("flat")
    with pytest.raises(DatasetError, match="Mean.npy"):
        broken.normalizer()


# --- VQ windows ----------------------------------------------------------------------------------


def test_vq_windows_cover_every_offset_of_long_enough_motions(layout, normalizer):
    ds = VQWindowDataset(layout, "train", normalizer, window_size=64)
    feature_frames = [n - 1 for n in FRAMES.values()]
    assert len(ds) == sum(t - 64 + 1 for t in feature_frames if t >= 64)
    assert "000002" not in ds.ids and "000003" not in ds.ids  # 60 and 30 frames: too short
    first = ds[0]
    assert first.shape == (64, 263) and first.dtype == torch.float32
    expected = normalizer.normalize(layout.load_features("000001"))
    assert torch.allclose(first, torch.from_numpy(expected[:64]))
    assert torch.allclose(ds[len(ds) - 1], torch.from_numpy(normalizer.normalize(layout.load_features("000006"))[-64:]))
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_balanced_vq_windows_weight_every_motion_equally(layout, normalizer):
    plain = VQWindowDataset(layout, "train", normalizer, window_size=24)
    ds = VQWindowDataset(layout, "train", normalizer, window_size=24, balance_motions=True)
    assert ds.ids == plain.ids and len(ds.ids) > 1
    counts = [len(m) - 24 + 1 for m in ds.motions]
    assert len(ds) == len(ds.ids) * max(counts)
    # every motion owns max(counts) consecutive items, cycling through all of its own offsets
    for k, (motion, n) in enumerate(zip(ds.motions, counts)):
        first = k * max(counts)
        starts = set()
        for j in range(max(counts)):
            item = ds[first + j].numpy()
            start = j % n
            assert np.array_equal(item, motion[start : start + 24])
            starts.add(start)
        assert starts == set(range(n))


def test_vq_windows_error_when_nothing_is_long_enough(layout, normalizer):
    with pytest.raises(DatasetError, match="500 frames"):
        VQWindowDataset(layout, "train", normalizer, window_size=500)


# --- text-motion items -------------------------------------------------------------------------


def test_text_motion_items_follow_the_filtering_rules(layout, normalizer):
    ds = TextMotionDataset(layout, "train", normalizer, seed=0)
    names = sorted(it.name for it in ds.items)
    # 000003 (30 frames) too short, 000004 (229 frames) too long, 000006 only has a sub-clip
    assert names == ["000001", "000002", "000005", "000005#1", "000006#0"]
    lengths = dict(zip((it.name for it in ds.items), ds.lengths()))
    assert lengths["000005#1"] == 60 and lengths["000006#0"] == 50
    sub = next(it for it in ds.items if it.name == "000005#1")
    assert np.allclose(sub.motion, normalizer.normalize(layout.load_features("000005"))[20:80])


def test_text_motion_crops_are_padded_unit_multiples(layout, normalizer):
    ds = TextMotionDataset(layout, "train", normalizer, seed=1)
    seen_lengths: dict[str, set] = {}
    captions_seen = set()
    for _ in range(30):
        for i in range(len(ds)):
            item = ds[i]
            m_len, motion = item["m_len"], item["motion"]
            assert motion.shape == (196, 263) and motion.dtype == torch.float32
            assert m_len % 4 == 0 and 40 - 4 <= m_len <= 196
            assert torch.count_nonzero(motion[m_len:]) == 0
            src = ds.items[i].motion
            starts = [s for s in range(len(src) - m_len + 1) if np.allclose(src[s : s + m_len], motion[:m_len].numpy())]
            assert starts, "the crop must be a contiguous piece of the normalised motion"
            assert item["caption"] in [a.caption for a in ds.items[i].annotations]
            assert item["tokens"] == simple_tokens(item["caption"])
            seen_lengths.setdefault(item["name"], set()).add(m_len)
            captions_seen.add(item["caption"])
    assert seen_lengths["000001"] == {120, 116}  # single and double crops both occur
    assert seen_lengths["000005#1"] == {60, 56}
    assert {"a person walks forward", "someone strolls and turns left"} <= captions_seen


def test_text_motion_draws_are_reproducible_with_a_seed(layout, normalizer):
    def draws(seed):
        ds = TextMotionDataset(layout, "train", normalizer, seed=seed)
        return [(d["caption"], d["m_len"], d["motion"][:4, 0].tolist()) for d in (ds[i % len(ds)] for i in range(40))]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    torch.manual_seed(3)
    a = draws(None)
    torch.manual_seed(3)
    assert draws(None) == a  # without a seed, torch's (per-worker) RNG drives the draws


def test_collate_batches_items(layout, normalizer):
    ds = TextMotionDataset(layout, "train", normalizer, seed=2)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_text_motion)))
    assert batch["motion"].shape == (3, 196, 263) and batch["m_lens"].dtype == torch.long
    assert len(batch["captions"]) == len(batch["tokens"]) == len(batch["names"]) == 3


def test_text_motion_rejects_inconsistent_lengths(layout, normalizer):
    with pytest.raises(ValueError, match="max_len=198"):
        TextMotionDataset(layout, "train", normalizer, max_len=198)
    with pytest.raises(DatasetError, match="300 <= T"):
        TextMotionDataset(layout, "train", normalizer, min_len=300, max_len=400)


def test_kit_style_min_length_keeps_shorter_clips(layout, normalizer):
    ds = TextMotionDataset(layout, "train", normalizer, min_len=24, seed=0)
    assert "000003" in {it.name for it in ds.items}  # 30 frames pass a KIT-style minimum of 24


def test_worker_init_fn_gives_each_worker_its_own_stream(tmp_path):
    from momask_model.data import worker_init_fn

    walk = synthetic_walk(121, turn_rate=0.4)
    ids = [f"{i:06d}" for i in range(12)]
    lay = write_dataset(tmp_path / "same", {i: walk for i in ids}, {i: ["walk"] for i in ids}, {"train": ids},
                        tokenizer=simple_tokens)
    ds = TextMotionDataset(lay, "train", lay.normalizer(), seed=5)

    def per_worker(init):
        loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_text_motion, worker_init_fn=init)
        draws = [(b["m_lens"].item(), b["motion"][0, :3, 1].tolist()) for b in loader]
        return draws[0::2], draws[1::2]  # workers take batches in turn

    w0, w1 = per_worker(None)
    assert w0 == w1  # identical motions + copied Generator: both workers replay the same draws
    w0, w1 = per_worker(worker_init_fn)
    assert w0 != w1
