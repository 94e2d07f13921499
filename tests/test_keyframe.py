"""Keyframe coding: hevc-inter's stream of IDR and predicted pictures, in the codec and on its own."""
import os

import numpy as np
import pytest

from imfcodec import analysis, keyframe
from imfcodec.codec import DecodeOptions, decode_file, encode_file, read_info
from imfcodec.decoder import repeat_keyframes
from imfcodec.errors import BitstreamError, UserError
from tests.conftest import dec_opts, enc_opts, eval_frames, keyframe_indices, with_version


@pytest.fixture(scope="module")
def faces():
    """Three frames of a talking head, 20 frames apart (the same face and background)."""
    frames = eval_frames(("lia-vox-driving2", 41))
    return [frames[0], frames[20], frames[40]]


def test_refresh_is_predicted_and_decodes_in_order(faces):
    enc = keyframe.Encoder(keyframe.INTER, intra_every=2)
    dec = keyframe.Decoder(keyframe.INTER, 256, 256)
    sizes = []
    for i, img in enumerate(faces):
        assert enc.next_is_intra == (i in (0, 2))
        trial = enc.trial(img, 30)
        data = enc.commit(img, 30)
        assert trial == data  # a predicted picture's trial replays its run exactly
        out = dec.decode(data)
        assert out.shape == img.shape and np.abs(out.astype(int) - img).mean() < 8
        sizes.append(len(data))
    assert sizes[1] < 0.5 * sizes[0]  # the refresh costs a fraction of the intra picture
    assert sizes[2] > sizes[1]        # the third starts a new run: intra again


def test_a_commit_takes_over_its_trial_and_codes_the_same_stream(faces):
    """Committing the picture just trialled reuses the trial's run; the stream is the one coding every
    picture once gives, and the sizes it remembers estimate the next keyframe of each kind."""
    plain, tried = keyframe.Encoder(keyframe.INTER, intra_every=2), keyframe.Encoder(keyframe.INTER, intra_every=2)
    assert tried.estimate() == 0
    sizes = []
    for img in faces:
        tried.trial(img, 30)
        data = tried.commit(img, 30)
        assert data == plain.commit(img, 30)
        sizes.append(len(data))
    assert tried.estimate() == sizes[1]  # the next is predicted (IDR, P, IDR so far): the last P's size
    idr = keyframe.Encoder(keyframe.INTER)
    first = idr.commit(faces[0], 30)
    assert idr.estimate() == len(first)  # no predicted picture yet: the intra one's size


def test_a_predicted_picture_alone_is_refused(faces):
    enc = keyframe.Encoder(keyframe.INTER)
    enc.commit(faces[0], 30)
    p = enc.commit(faces[1], 30)
    with pytest.raises(BitstreamError):
        keyframe.Decoder(keyframe.INTER, 256, 256).decode(p)  # no picture before it to predict from
    with pytest.raises(BitstreamError):
        keyframe.Decoder(keyframe.INTER, 256, 256).decode(b"\x00\x00\x01" + bytes(100))


def test_inter_keyframes_decode_to_the_frames_the_encoder_used(tiny, clip, tmp_path, monkeypatch):
    seen = []
    decode = analysis.keyframe.Decoder.decode
    monkeypatch.setattr(analysis.keyframe.Decoder, "decode", lambda self, d: seen.append(decode(self, d)) or seen[-1])
    out = tmp_path / "inter.imf"
    opts = enc_opts(tiny, keyframe_codec="hevc-inter", keyframe_quality=30, keyframe_position="start",
                    keyframe_interval=4, intra_every=2, refine_steps=0)
    encode_file(str(clip), str(out), opts)
    monkeypatch.undo()
    info = read_info(str(out))
    assert info["version"] == "7.0" and info["keyframe_codec"] == "hevc-inter"
    keys = keyframe_indices(out)
    assert keys == [0, 4, 8] and len(seen) == 3
    rep = repeat_keyframes(str(out))
    for k, img in zip(keys, seen):
        assert np.array_equal(rep[k], img)
    frames = decode_file(str(out), None, dec_opts(tiny), keep_frames=True).frames_rgb
    assert all(np.array_equal(frames[k], img) for k, img in zip(keys, seen))
    with pytest.raises(BitstreamError, match="needs a 5.x file"):
        decode_file(str(with_version(out, tmp_path / "v4.imf", 4, tiny)), None, dec_opts(tiny))


@pytest.mark.parametrize("cap", [False, True])
def test_inter_keyframes_mid_segment(tiny, clip, tmp_path, monkeypatch, cap):
    """Keyframes chosen among candidates in the middle of their segments, one segment a window, form one
    hevc-inter stream: what the decoder shows at each is the picture the encoder measured against, and a
    rate cap holds (a refresh past it becomes an IDR at a higher CRF)."""
    kw = dict(keyframe_codec="hevc-inter", keyframe_quality=30, keyframe_position="middle", keyframe_interval=5,
              plan_segments=1, keyframe_candidates=3, intra_every=4, refine_steps=0, hold=True)
    if cap:
        free = encode_file(str(clip), str(tmp_path / "free.imf"), enc_opts(tiny, **kw))
        smallest = encode_file(str(clip), str(tmp_path / "q51.imf"), enc_opts(tiny, **{**kw, "keyframe_quality": 51}))
        kw["max_bpp"] = (free.bpp_total + smallest.bpp_total) / 2
    seen = []
    decode = analysis.keyframe.Decoder.decode
    monkeypatch.setattr(analysis.keyframe.Decoder, "decode", lambda self, d: seen.append(decode(self, d)) or seen[-1])
    out = tmp_path / "mid.imf"
    r = encode_file(str(clip), str(out), enc_opts(tiny, **kw))
    monkeypatch.undo()
    keys = keyframe_indices(out)
    assert read_info(str(out))["keyframe_codec"] == "hevc-inter" and len(keys) == len(seen) > 1
    assert keys[0] in (1, 2, 3) and keys[1] in (6, 7, 8)  # the full segments': among their middle candidates
    rep = repeat_keyframes(str(out))
    assert all(np.array_equal(rep[k], img) for k, img in zip(keys, seen))
    frames = decode_file(str(out), None, dec_opts(tiny), keep_frames=True).frames_rgb
    assert all(np.array_equal(frames[k], img) for k, img in zip(keys, seen))
    if cap:
        assert r.bpp_total <= kw["max_bpp"] and not r.over_cap and r.bytes_keyframe < free.bytes_keyframe


def test_inter_keyframes_need_one_segment_a_window(tiny, clip, tmp_path):
    with pytest.raises(UserError, match="plan one segment at a time"):
        encode_file(str(clip), str(tmp_path / "x.imf"), enc_opts(tiny, keyframe_codec="hevc-inter", plan_segments=3))
    assert not (tmp_path / "x.imf").exists()


def test_peek_shows_the_next_picture_without_moving_on(faces):
    """Candidates tried as the next keyframe (hevc-inter: predicted from the one before) decode as the next
    picture would, and leave the decoder where it was: it then decodes the file's stream as a decoder that
    never saw them."""
    enc = keyframe.Encoder(keyframe.INTER, intra_every=2)
    dec, plain = keyframe.Decoder(keyframe.INTER, 256, 256), keyframe.Decoder(keyframe.INTER, 256, 256)
    for i, img in enumerate(faces):
        other = enc.trial(faces[(i + 1) % 3], 30)  # a candidate not taken
        assert np.abs(dec.peek(other).astype(int) - faces[(i + 1) % 3]).mean() < 8
        data = enc.commit(img, 30)
        peeked = dec.peek(data)
        assert np.array_equal(peeked, dec.decode(data)) and np.array_equal(peeked, plain.decode(data))


def test_intra_commit_reuses_only_its_own_trial(faces):
    enc = keyframe.Encoder("av1")
    trial = enc.trial(faces[0], 40)
    assert enc.next_is_intra and enc.commit(faces[0], 40) == trial
    assert enc.commit(faces[1], 40) == keyframe.encode(faces[1], "av1", 40) != trial  # another picture: coded


def test_av1_keyframes_leave_the_scheduling_policy_alone(faces):
    """SVT-AV1 moves the thread that opens an encoder to real-time scheduling when it may (as root): the
    codec puts it back, so an encoder never keeps other processes off its core."""
    before = os.sched_getscheduler(0), os.sched_getparam(0)
    keyframe.encode(faces[0], "av1", 40)
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before
