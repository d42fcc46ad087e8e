import pytest
import torch

from otavatar import motion


def test_motion_vector_takes_expression_angles_translation_in_order():
    coeffs = torch.arange(260, dtype=torch.float32).unsqueeze(0)
    x = motion.motion_from_coeffs(coeffs)
    expected = torch.cat([torch.arange(80, 144), torch.arange(224, 227), torch.arange(254, 257)]).float()
    assert x.shape == (1, 70)
    assert torch.equal(x[0], expected)
    assert torch.equal(motion.motion_from_coeffs(coeffs[:, :257]), x)
    assert torch.equal(motion.motion_from_coeffs(x), x)


def test_wrong_width_is_rejected_with_shapes():
    with pytest.raises(ValueError, match=r"expected a last dimension of 257, 260 or 70, found shape \(3, 100\)"):
        motion.motion_from_coeffs(torch.zeros(3, 100))
    with pytest.raises(ValueError, match=r"expected shape \(N, 70\), found \(70,\)"):
        motion.motion_windows(torch.zeros(70))


def test_window_is_centred_and_replicates_edges():
    sequence = torch.arange(5, dtype=torch.float32)[:, None].repeat(1, 70)
    window = motion.motion_window(sequence, 1)
    assert window.shape == (70, 27)
    expected = torch.tensor([0] * 12 + [0, 1, 2, 3, 4] + [4] * 10, dtype=torch.float32)
    assert torch.equal(window[0], expected)
    assert window[0, 13] == 1  # centre of the window is the target frame


def test_sequence_windows_equal_single_windows():
    sequence = torch.randn(40, 257)
    windows = motion.motion_windows(sequence)
    assert windows.shape == (40, 70, 27)
    for frame in (0, 13, 39):
        assert torch.equal(windows[frame], motion.motion_window(sequence, frame))


def test_frame_outside_sequence_is_rejected():
    with pytest.raises(IndexError, match="frame 5 outside a sequence of 5 frames"):
        motion.motion_window(torch.zeros(5, 70), 5)
