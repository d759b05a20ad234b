"""The character tokenizer, the tiny Llama and its cached warm start."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from conftest import TINY_CONFIG

from gps_env import policy
from gps_env.policy import CHARACTERS, PolicyConfig, build_model, build_tokenizer, encode, load_policy, warm_start


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize("text", ["12+3=", "66400+87540=", "3,5,7>22:", "(3*5)-7", " 0 ", "".join(CHARACTERS)])
def test_tokenizer_round_trip(tokenizer, text):
    ids = encode(tokenizer, text)
    assert ids[0] == tokenizer.bos_token_id
    assert len(ids) == len(text) + 1  # one token per character
    assert tokenizer.pad_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(ids[1:]) == text


def test_tokenizer_vocabulary(tokenizer):
    assert len(tokenizer) == 3 + len(CHARACTERS)
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id] == [0, 1, 2]
    assert tokenizer.padding_side == "left"
    ids = [tokenizer.convert_tokens_to_ids(c) for c in CHARACTERS]
    assert len(set(ids)) == len(CHARACTERS) and min(ids) == 3
    eos_text = tokenizer.decode(encode(tokenizer, "12") + [tokenizer.eos_token_id], skip_special_tokens=True)
    assert eos_text == "12"


def test_saved_tokenizer_matches(tiny_policy, tokenizer):
    _, loaded = load_policy(tiny_policy)
    for text in ["12+3=", "3,5,7>22:"]:
        assert encode(loaded, text) == encode(tokenizer, text)


def test_warm_start_caches(tiny_policy, tmp_path_factory):
    record = json.loads((tiny_policy / "warm_start.json").read_text())
    assert 1 <= record["stopped_at_step"] <= TINY_CONFIG.max_steps
    assert record["config"]["hidden_size"] == 32 and record["version"] >= 1
    assert record["history"] and record["history"][-1]["step"] == record["stopped_at_step"]
    start = time.perf_counter()
    again = warm_start(TINY_CONFIG, cache_dir=tiny_policy.parent, progress=False)
    assert time.perf_counter() - start < 0.5
    assert again == tiny_policy
    assert json.loads((again / "warm_start.json").read_text()) == record  # not retrained
    assert tiny_policy.name == f"policy-{TINY_CONFIG.key()}"


def test_warm_start_honours_cache_env_var(tiny_policy, monkeypatch):
    monkeypatch.setenv("GPS_ENV_CACHE", str(tiny_policy.parent))
    start = time.perf_counter()
    assert warm_start(TINY_CONFIG, progress=False) == tiny_policy
    assert time.perf_counter() - start < 0.5


def test_loaded_policy(tiny_policy):
    model, tokenizer = load_policy(tiny_policy)
    assert not model.training
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    assert model.config.vocab_size == len(tokenizer)
    record = json.loads((tiny_policy / "warm_start.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == record["parameters"]


def test_config_key():
    assert PolicyConfig().key() == PolicyConfig().key()
    assert PolicyConfig().key() != PolicyConfig(seed=1).key()
    assert PolicyConfig().key() != TINY_CONFIG.key()
    assert len(PolicyConfig().key()) == 12


def test_unknown_mix_rejected(tmp_path):
    with pytest.raises(ValueError, match="mix"):
        warm_start(PolicyConfig(mix="nope"), cache_dir=tmp_path, progress=False)


def test_default_model_size(tokenizer):
    model = build_model(PolicyConfig(), len(tokenizer), tokenizer)
    count = sum(p.numel() for p in model.parameters())
    assert 200_000 <= count <= 3_500_000
    assert model.config.tie_word_embeddings
    assert model.config.max_position_embeddings == PolicyConfig().max_positions


def test_config_key_of_the_arithmetic_policy_is_unchanged_by_later_fields():
    """Fields added for the Reasoning Gym world leave the key out at their defaults: old caches stay valid."""
    assert PolicyConfig().key() == PolicyConfig(tokenizer="char", mixed_target=None).key()
    assert PolicyConfig().key() != PolicyConfig(tokenizer="bpe").key()
    assert PolicyConfig().key() != PolicyConfig(mixed_target=0.1).key()


def test_bpe_tokenizer_splits_digits_and_round_trips():
    corpus = ["What is 12 + 345? Answer with a number.", "Count the letters in apple."] * 50
    tok = build_tokenizer("bpe", corpus, vocab_size=300)
    assert len(tok) <= 300
    ids = encode(tok, "What is 907 + 12?")
    pieces = [tok.decode([i]) for i in ids]
    assert all(len(p.strip()) == 1 for p in pieces if p.strip().isdigit())  # one token per digit
    assert tok.decode(ids, skip_special_tokens=True) == "What is 907 + 12?"
    with pytest.raises(ValueError, match="tokenizer"):
        build_tokenizer("words", corpus)


@pytest.fixture
def packaged(tiny_policy, tmp_path, monkeypatch):
    """The tiny policy shipped into a temporary package directory."""
    monkeypatch.setattr(policy, "PRETRAINED", tmp_path / "pretrained")
    monkeypatch.setenv("GPS_ENV_CACHE", str(tiny_policy.parent))
    return policy.ship(TINY_CONFIG, progress=False)


def test_shipped_weights_load_and_are_preferred_to_the_cache(packaged, tiny_policy):
    assert packaged.parent == policy.PRETRAINED and packaged.name == tiny_policy.name
    digests = json.loads((packaged / policy.DIGESTS).read_text())
    assert {"model.safetensors", "warm_start.json", "config.json"} <= set(digests)
    assert policy.shipped(TINY_CONFIG) == packaged
    assert warm_start(TINY_CONFIG, progress=False) == packaged
    assert policy.shipped(PolicyConfig(seed=5)) is None


@pytest.mark.parametrize("damage", ["alter", "remove", "extra", "digests"])
def test_damaged_shipped_weights_are_refused_naming_the_file(packaged, damage):
    weights = packaged / "model.safetensors"
    if damage == "alter":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
        match = "model.safetensors: sha256 differs"
    elif damage == "remove":
        weights.unlink()
        match = "model.safetensors: listed .* but missing"
    elif damage == "extra":
        (packaged / "pickle.bin").write_bytes(b"x")
        match = "pickle.bin: not listed"
    else:
        (packaged / policy.DIGESTS).write_text("[1, 2")
        match = "SHA256SUMS.json: unreadable"
    with pytest.raises(ValueError, match=match):
        warm_start(TINY_CONFIG, progress=False)


@pytest.mark.parametrize("mix", ["default", "reasoning_gym_v1"])
def test_both_worlds_warm_starts_ship_intact(mix):
    """Each embedded world's warm start is in the package and matches its digests (no machine trains its own,
    so every machine starts RL from the same weights)."""
    path = policy.shipped(policy.default_policy(mix))
    assert path is not None and path.parent == policy.PRETRAINED
    record = json.loads((path / "warm_start.json").read_text())
    assert record["config"] == json.loads(json.dumps(dataclasses.asdict(policy.default_policy(mix))))
