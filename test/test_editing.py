"""Motion editing (temporal inpainting), edit sections, continuation and precomputed conditions (issue 13)."""
import numpy as np
import pytest
import torch

from momask_model.generation.bundle import build_random_momask, load_bundle
from momask_model.generation.loading import default_bundle_path
from momask_model.config import tiny_config
from momask_model.generation.editing import kept_sections
from momask_model.generation.results import GenerationError
from momask_model.nets.masked import MaskTransformer
from momask_model.nets.residual import ResidualTransformer
from momask_model.generation.sections import SectionError, parse_sections
from momask_model.motion.ground_alignment import aligned_error, facing_yaw


TINY = dict(num_tokens=64, code_dim=32, latent_dim=64, ff_size=128, num_layers=2, num_heads=4, cond_dim=64)



@pytest.fixture(scope="module")
def tiny():
    return build_random_momask(tiny_config(), seed=3)


@pytest.fixture(scope="module")
def demo():
    return load_bundle(default_bundle_path())


# ---------------------------------------------------------------------------------------- sections
@pytest.mark.parametrize(
    "spec, tokens",
    [
        ("2s:4s", (10, 20)),
        ("40:80", (10, 20)),
        ("40f:80f", (10, 20)),
        (":2s", (0, 10)),
        ("6s:", (30, 49)),
        ("0.25,0.5", (12, 24)),  # the official fraction form: int(a * N), int(b * N)
        ("40,80", (10, 20)),  # official integers are frames
        ("41:43", (10, 11)),  # frame ends cover every requested frame
        ((1.0, 2.0), (0, 0)),  # a float pair is fractions: 1.0,2.0 is out of range (checked below)
    ][:-1],
)
def test_section_syntax(spec, tokens):
    (section,) = parse_sections(spec, n_tokens=49)
    assert (section.start, section.end) == tokens


@pytest.mark.parametrize(
    "specs, match",
    [
        (["4s:2s"], "reversed"),
        (["2s:2s"], "empty"),
        (["0.5,0.5"], "empty"),
        (["8s:12s"], "past the source"),
        (["1.2,1.5"], r"\[0, 1\]"),
        (["1s:3s", "2s:4s"], "overlap"),
        (["walk"], "not 'start:end'"),
        (["2x:4s"], "not a time"),
        (["1:2:3"], "more than one"),
        (["0.2,40"], "two fractions"),
        ([""], "not 'start:end'"),
    ],
)
def test_bad_sections_are_clear_errors_naming_the_section(specs, match):
    with pytest.raises(SectionError, match=match) as info:
        parse_sections(specs, n_tokens=49)
    assert repr(specs[-1].strip()) in str(info.value) or "overlap" in str(info.value)


def test_too_short_source_is_refused():
    with pytest.raises(SectionError, match="at least 8"):
        parse_sections(":4", n_tokens=1)


def test_adjacent_sections_are_fine_and_sorted():
    got = parse_sections(["2s:3s", "1s:2s"], n_tokens=49)
    assert [(s.start, s.end) for s in got] == [(5, 10), (10, 15)]
    assert kept_sections([(20, 40), (60, 80)], 100) == [(0, 20), (40, 60), (80, 100)]


# ---------------------------------------------------------------------------------------- edit core
def _transformers():
    torch.manual_seed(5)
    return MaskTransformer(**TINY).eval(), ResidualTransformer(**TINY, num_quantizers=4).eval()


def test_kept_tokens_never_change_during_an_edit(monkeypatch):
    masked, _ = _transformers()
    cond = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    source = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    edit_mask = torch.zeros(2, 12, dtype=torch.bool)
    edit_mask[0, 3:7] = True
    edit_mask[1, 8:] = True
    lens = torch.tensor([12, 11])
    seen = []
    real = masked.forward_with_cfg

    def spy(ids, cond, padding, scale):
        seen.append(ids.clone())
        return real(ids, cond, padding, scale)

    monkeypatch.setattr(masked, "forward_with_cfg", spy)
    out = masked.edit(cond, source, lens, edit_mask, timesteps=5, generator=torch.Generator().manual_seed(2))
    valid = torch.arange(12) < lens[:, None]
    kept = ~edit_mask & valid
    assert len(seen) == 5
    for ids in seen:  # at every step the kept positions hold the source tokens (never [MASK])
        assert torch.equal(ids[kept], source[kept])
    assert torch.equal(out[kept], source[kept])
    assert (seen[0][edit_mask & valid] == masked.mask_id).all()  # edited positions start masked
    assert out[1, 11] == -1  # padding


def test_edit_schedule_counts_only_edited_positions(monkeypatch):
    masked, _ = _transformers()
    counts = []
    real = masked.forward_with_cfg

    def spy(ids, cond, padding, scale):
        counts.append(int((ids == masked.mask_id).sum()))
        return real(ids, cond, padding, scale)

    monkeypatch.setattr(masked, "forward_with_cfg", spy)
    mask = torch.zeros(1, 20, dtype=torch.bool)
    mask[0, 5:15] = True
    masked.edit(torch.randn(1, 64), torch.zeros(1, 20, dtype=torch.long), torch.tensor([20]), mask, timesteps=4,
                generator=torch.Generator().manual_seed(0))
    # round(cos(pi t / 2) * 10) for t = 0, 1/3, 2/3, 1 (at least 1): 10, 9, 5, 1
    assert counts == [10, 9, 5, 1]


def test_empty_edit_mask_returns_the_source_and_mask_free_refines():
    masked, _ = _transformers()
    source = torch.randint(0, 64, (1, 10), generator=torch.Generator().manual_seed(1))
    none = torch.zeros(1, 10, dtype=torch.bool)
    out = masked.edit(torch.randn(1, 64), source, torch.tensor([10]), none, timesteps=3)
    assert torch.equal(out, source)
    refined = masked.edit(torch.randn(1, 64), source, torch.tensor([10]), None, timesteps=3,
                          generator=torch.Generator().manual_seed(0))
    assert refined.shape == source.shape and (refined >= 0).all()


def test_residual_keep_mode_copies_source_layers_at_kept_positions():
    _, residual = _transformers()
    codes = torch.randint(0, 64, (1, 10, 4), generator=torch.Generator().manual_seed(3))
    keep = torch.ones(1, 10, dtype=torch.bool)
    keep[0, 4:7] = False
    out = residual.generate(codes[..., 0], torch.randn(1, 64), torch.tensor([10]), keep_codes=codes, keep_mask=keep,
                            generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[keep], codes[keep])
    assert not torch.equal(out[~keep], codes[~keep])


# ---------------------------------------------------------------------------------------- MoMask.edit
def test_edit_keeps_sections_and_fast_equals_reference(tiny):
    src = tiny.generate("a person walks forward", 80, seed=1)
    tokens = tiny.encode_motion(src).numpy()[0]
    for residual in ("keep", "regenerate"):
        ref = tiny.edit(src, ["1s:2.4s"], "a person jumps", seed=2, fast=False, residual=residual)
        fast = tiny.edit(src, ["1s:2.4s"], "a person jumps", seed=2, residual=residual)
        np.testing.assert_array_equal(fast.tokens, ref.tokens)
        out = fast.tokens[0]
        assert fast.features.shape == (1, 80, 263) and fast.marks == ((20, 48),)
        np.testing.assert_array_equal(out[np.r_[0:5, 12:20], 0], tokens[np.r_[0:5, 12:20], 0])
        if residual == "keep":
            np.testing.assert_array_equal(out[np.r_[0:5, 12:20]], tokens[np.r_[0:5, 12:20]])
        assert (out[5:12] != tokens[5:12]).any()


def test_edit_without_sections_returns_the_source_tokens(tiny, tmp_path):
    src = tiny.generate("a person walks forward", 40, seed=1)
    path = tmp_path / "src.npy"
    np.save(path, src.motion(0)[0])
    for source in (src, path, src.motion(0)[0]):
        out = tiny.edit(source, [], "a person jumps")
        np.testing.assert_array_equal(out.tokens, tiny.encode_motion(src).numpy())


def test_prefix_suffix_and_in_between_edits_on_a_long_source(tiny):
    src = tiny.generate("a person walks", 400, seed=0)  # longer than one window: edited piecewise
    tokens = tiny.encode_motion(src).numpy()[0]
    out = tiny.edit(src, [":2s", "9s:12s", "18s:"], "a person runs", seed=1).tokens[0]
    assert out.shape == tokens.shape
    np.testing.assert_array_equal(out[10:45], tokens[10:45])
    np.testing.assert_array_equal(out[60:90], tokens[60:90])
    assert (out[:10] != tokens[:10]).any() and (out[45:60] != tokens[45:60]).any() and (out[90:] != tokens[90:]).any()


def test_bad_edit_requests_name_the_problem(tiny):
    src = tiny.generate("a person walks forward", 40, seed=1)
    with pytest.raises(SectionError, match="'3s:4s'"):
        tiny.edit(src, ["3s:4s"], "jump")
    with pytest.raises(GenerationError, match="residual"):
        tiny.edit(src, ["0:8"], "jump", residual="sometimes")
    with pytest.raises(GenerationError, match="263"):
        tiny.edit(np.zeros((40, 5)), ["0:8"], "jump")
    with pytest.raises(GenerationError, match="not found"):
        tiny.edit("/nonexistent/motion.npz", ["0:8"], "jump")
    with pytest.raises(SectionError, match="at least"):
        tiny.edit(src.motion(0)[0][:4], ["0:4"], "jump")


def test_kept_sections_of_a_demo_edit_are_the_vq_reconstruction(demo):
    """Kept frames are the source's own decode: decoding the spliced chain instead moved them 5-7 cm
    (the decoder reaches 2 s across each join)."""
    from momask_model.generation.editing import source_joints

    src = demo.generate("a person walks forward", 160, seed=3)
    joints = source_joints(demo, src)
    recon = demo.edit(src, [], None)
    out = demo.edit(src, ["3s:5s"], "a person kicks", seed=4)
    assert out.marks == ((60, 100),)
    for a, b in kept_sections(out.marks, 160):
        np.testing.assert_array_equal(out.features[0, a:b], recon.features[0, a:b])
        assert aligned_error(recon.joints[0, a:b], out.joints[0, a:b]) < 1e-4
        assert aligned_error(joints[a:b], out.joints[0, a:b]) < 0.08
    # the section starts where the kept motion is and the motion after it goes on from its end
    steps = np.linalg.norm(np.diff(out.joints[0][:, 0][:, [0, 2]], axis=0), axis=-1)
    assert steps[[59, 99]].max() < 0.15


def test_splice_joins_are_crossfades_without_a_step():
    from momask_model.generation.splicing import compose

    t = np.arange(80, dtype=np.float64)
    kept = np.zeros((80, 22, 3))
    kept[..., 0] = 0.05 * t[:, None]  # walking along +x
    kept[..., 1] = np.linspace(0.0, 1.7, 22) + 0.02 * np.sin(t / 3.0)[:, None]
    kept[:, 2, 2], kept[:, 1, 2] = 0.1, -0.1  # hips side by side: a heading
    piece = kept[20:60].copy()
    piece[:, 5:, 1] += 0.3  # another pose, 30 cm higher from joint 5 on
    hard = compose(kept, [(20, 60, piece)], fade=0)
    soft = compose(kept, [(20, 60, piece)])
    np.testing.assert_allclose(soft[:20], kept[:20])
    np.testing.assert_allclose(soft[60:], kept[60:], atol=1e-9)  # the piece left the body where kept would be
    np.testing.assert_allclose(soft[28:52], piece[8:32], atol=1e-9)  # the piece itself between the fades
    jerk = lambda j: np.abs(np.diff(j[15:25], n=3, axis=0)).max()  # noqa: E731
    assert jerk(soft) < jerk(hard) / 4


# ---------------------------------------------------------------------------------------- conditions
def test_precomputed_condition_replaces_the_text(tiny):
    cond = tiny.encode_text(["a person walks forward"])
    by_text = tiny.generate("a person walks forward", 40, seed=5)
    by_cond = tiny.generate(None, 40, seed=5, cond=cond)
    np.testing.assert_array_equal(by_text.tokens, by_cond.tokens)
    src = by_text
    a = tiny.edit(src, ["0:16"], "a person jumps", seed=6)
    b = tiny.edit(src, ["0:16"], cond=tiny.encode_text(["a person jumps"]), seed=6)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    with pytest.raises(GenerationError, match="shape"):
        tiny.generate(None, 40, cond=torch.zeros(1, 3))
    with pytest.raises(GenerationError, match="finite"):
        tiny.generate(None, 40, cond=torch.full((1, 64), float("nan")))
    with pytest.raises(GenerationError, match="cond="):
        tiny.generate(None, 40)


# ---------------------------------------------------------------------------------------- continuation
def test_continue_motion_starts_where_the_previous_motion_is(demo):
    prev = demo.generate("a person walks forward", 120, seed=1)
    joints = prev.joints[0].copy()
    # the caller's frame: turned and moved on the ground
    c, s = np.cos(1.0), np.sin(1.0)
    x, z = joints[..., 0].copy(), joints[..., 2].copy()
    joints[..., 0], joints[..., 2] = c * x + s * z + 3.0, -s * x + c * z - 2.0
    for at in (60, 120):  # preempt mid-motion, queue at its end
        for fast in (True, False):
            out = demo.continue_motion(prev.tokens[0], joints, at, "a person runs forward", 80, seed=2, fast=fast)
            if fast:
                first = out
            else:
                np.testing.assert_array_equal(out.tokens, first.tokens)
        assert out.features.shape == (1, 80, 263) and out.tokens.shape == (1, 20, 6) and list(out.lengths) == [80]
        step = np.linalg.norm(out.joints[0, 0, 0, [0, 2]] - joints[at - 1, 0, [0, 2]])
        assert step < 0.15  # one frame's root motion, not a jump to the origin
        assert abs(np.angle(np.exp(1j * (facing_yaw(out.joints[0, 0]) - facing_yaw(joints[at - 1]))))) < 0.35
    long = demo.continue_motion(prev.tokens[0], joints, 60, "a person walks forward", 400, seed=3)
    assert long.features.shape == (1, 400, 263)  # longer than a window: it windows


def test_continue_motion_rejects_bad_switches(demo):
    prev = demo.generate("a person walks forward", 80, seed=1)
    for at, match in ((0, "at_frame"), (6, "multiple"), (84, r"\[4, 80\]")):
        with pytest.raises(GenerationError, match=match):
            demo.continue_motion(prev.tokens[0], prev.joints[0], at, "a person jumps", 40)
    with pytest.raises(GenerationError, match="length"):
        demo.continue_motion(prev.tokens[0], prev.joints[0], 40, "a person jumps", 42)
    with pytest.raises(GenerationError, match="prev_joints"):
        demo.continue_motion(prev.tokens[0], prev.joints[0, :, :5], 40, "a person jumps", 40)


def test_edit_a_humanml3d_new_joint_vecs_file(demo, shared_data):
    path = shared_data / "humanml3d_sample" / "new_joint_vecs" / "012314.npy"  # (170, 263) features
    tokens = demo.encode_motion(path).numpy()[0]
    out = demo.edit(path, ["0.25,0.5"], "a person jumps forward with both feet", seed=1)
    assert out.features.shape == (1, 168, 263)  # cropped to whole 4-frame tokens
    (start, end), = out.marks
    assert (start, end) == (40, 84)  # int(0.25 * 42), int(0.5 * 42) tokens, as edit_t2m.py
    kept = np.r_[0 : start // 4, end // 4 : 42]
    np.testing.assert_array_equal(out.tokens[0, kept], tokens[kept])


def test_preview_tints_the_marked_frames():
    from momask_model.motion.render import MARK_COLOR, render_frames

    joints = np.zeros((3, 22, 3))
    joints[:, :, 1] = np.linspace(0, 1.7, 22)
    frames = render_frames(joints, size_px=64, marks=((1, 2, "edited"),))
    tint = tuple(int(MARK_COLOR[i : i + 2], 16) for i in (1, 3, 5))
    assert tuple(frames[1, 0, 0]) == tint and tuple(frames[0, 0, 0]) == (255, 255, 255)


def test_a_demo_walk_edited_to_jump_kick_or_spin_does_it_and_keeps_the_rest(demo):
    """The demo model learned single skills: inpainting a section between walking inpaints walking
    (mode="inpaint"), so its edits splice in a section made from the text (mode="auto"). A 2 s kick
    or spin made at 2 s read as a punch or a flip (1 and 0 of 5 seeds): the section is now the end of
    a 3 s motion, decoded within it."""
    from momask_model.evaluate.skills import SkillRecognizer
    from momask_model.generation.editing import source_joints

    recognizer = SkillRecognizer.load(default_bundle_path().with_name("demo_recognizer.pt"))
    sources = [demo.generate("a person walks forward", 120, seed=seed) for seed in range(5)]
    for skill, text in (("jump", "a person jumps"), ("kick", "a person kicks"), ("spin", "a person spins around")):
        named = []
        for seed, src in enumerate(sources):
            out = demo.edit(src, ["2s:4s"], text, seed=100 + seed)
            (a, b), = out.marks
            named.append(recognizer.predict([out.features[0, a:b]])[0])
            if skill == "jump":
                joints, recon = source_joints(demo, src), demo.edit(src, [], None).joints[0]
                for ka, kb in kept_sections(out.marks, 120):
                    assert aligned_error(joints[ka:kb], out.joints[0, ka:kb]) <= aligned_error(joints[ka:kb], recon[ka:kb]) + 1e-4
        assert sum(n == skill for n in named) >= 4, (skill, named)
    inpainted = [demo.edit(src, ["2s:4s"], "a person jumps", seed=100 + s, mode="inpaint") for s, src in enumerate(sources[:2])]
    assert [recognizer.predict([o.features[0, 40:80]])[0] for o in inpainted] == ["walk", "walk"]  # the context wins
    with pytest.raises(GenerationError, match="mode"):
        demo.edit(sources[0], ["2s:4s"], "a person jumps", mode="sometimes")
