"""Tiny llama-architecture GGUF models, written locally, so a real model server can be certified offline.

`random`: random weights; the server speaks the protocol but the answers are nonsense.
`scripted`: a 1-layer model whose attention averages the whole prompt (Q=K=0), so it behaves as a
keyword -> canned-answer lookup; logit gaps are huge, so it is deterministic at any temperature. The
script is tuned to the probe prompts in `probes.py`: the scripted model passes the suite.

Needs `gguf` and `numpy` (the `llm` extra); imported lazily so the package works without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Mode = Literal["random", "scripted"]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Keyword (case-sensitive, as it appears in a probe prompt) -> answer; a list is a cycle that never ends.
SCRIPT: dict[str, str | list[str]] = {
    "pong": "pong",
    "number": "42",
    "capital": "Paris",
    "OK": "OK",
    "JSON": '{"name": "Alice", "age": 30}',
    "password": "ZEBRA",
    "Count": ["1", *(f" {i}" for i in range(2, 41))],
}
DEFAULT_ANSWER = "I am a tiny test model."
BASE_WORDS = ["user", "system", "assistant", "the", "and", "hello", "model", "Reply", "with", "exactly", "word"]
# Logit scales: a keyword starts its answer (C), a bigram continues it (E >> C * sqrt(n_embd)), the
# default answer starts only when no keyword is present (D).
KEYWORD_LOGIT, BIGRAM_LOGIT, DEFAULT_LOGIT = 100.0, 10000.0, 1.0


def _sp(text: str) -> str:
    """SentencePiece spelling of a space."""
    return text.replace(" ", "\u2581")


@dataclass
class _Vocab:
    tokens: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add(self, text: str, ttype: int, score: float = 0.0) -> int:
        if text in self.index:
            return self.index[text]
        self.index[text] = len(self.tokens)
        self.tokens.append(text)
        self.scores.append(score)
        self.types.append(ttype)
        return self.index[text]


def _build_vocab(scripted: bool) -> tuple[_Vocab, dict[str, list[int]], dict[str, list[int]]]:
    import gguf

    normal = int(gguf.TokenType.NORMAL)
    vocab = _Vocab()
    vocab.add("<unk>", int(gguf.TokenType.UNKNOWN))
    vocab.add("<s>", int(gguf.TokenType.CONTROL))
    vocab.add("</s>", int(gguf.TokenType.CONTROL))
    if scripted:
        for byte in range(256):
            vocab.add(f"<0x{byte:02X}>", int(gguf.TokenType.BYTE))
    else:
        # No byte tokens: random weights would string them into invalid UTF-8, which upstream llama-server
        # answers with HTTP 500. Every piece the random model can emit is printable ASCII, or a newline.
        vocab.add("\n", normal)
    vocab.add("<|im_start|>", int(gguf.TokenType.CONTROL))
    vocab.add("<|im_end|>", int(gguf.TokenType.CONTROL))
    for code in range(32, 127):
        vocab.add(_sp(chr(code)), normal, 1.0)
    words = list(BASE_WORDS) + (list(SCRIPT) if scripted else [])
    keyword_ids: dict[str, list[int]] = {}
    for word in words:
        for form in (word, " " + word):  # every prefix, so SentencePiece merges reach the whole word
            for k in range(2, len(form) + 1):
                vocab.add(_sp(form[:k]), normal, float(k))
        if scripted and word in SCRIPT:
            keyword_ids[word] = [vocab.index[_sp(word)], vocab.index[_sp(" " + word)]]
    chains: dict[str, list[int]] = {}
    if scripted:
        used: set[int] = set()
        answers: dict[str, str | list[str]] = {**SCRIPT, "__default__": DEFAULT_ANSWER}
        for key, answer in answers.items():
            pieces = answer if isinstance(answer, list) else _split_answer(answer)
            ids = []
            for piece in pieces:
                token = vocab.add(_sp(piece), normal, -1000.0)
                if token in used:
                    raise ValueError(f"answer piece {piece!r} of {key!r} is not unique; change SCRIPT")
                used.add(token)
                ids.append(token)
            chains[key] = ids
    return vocab, keyword_ids, chains


def _split_answer(text: str) -> list[str]:
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])]


def write_model(path: str | Path, mode: Mode = "scripted") -> Path:
    """Write a tiny GGUF model to `path` (about 6 MB scripted, 0.5 MB random) and return the path."""
    import gguf
    import numpy as np

    out = Path(path)
    scripted = mode == "scripted"
    vocab, keyword_ids, chains = _build_vocab(scripted)
    n_vocab = len(vocab.tokens)
    if scripted:
        n_embd = ((n_vocab + len(keyword_ids) + 63) // 64) * 64
        n_layer, n_head, n_ff = 1, 4, 32
    else:
        n_embd, n_layer, n_head, n_ff = 64, 2, 4, 128
    writer: Any = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(f"tiny-{mode}")
    writer.add_context_length(2048)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head)
    writer.add_rope_dimension_count(n_embd // n_head)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    writer.add_bos_token_id(vocab.index["<s>"])
    writer.add_eos_token_id(vocab.index["</s>"])
    writer.add_unk_token_id(vocab.index["<unk>"])
    writer.add_add_bos_token(True)
    writer.add_add_space_prefix(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    f32 = np.float32
    tensors: dict[str, Any] = {}
    if not scripted:
        rng = np.random.default_rng(0)

        def noise(*shape: int) -> Any:
            return (rng.standard_normal(shape) * 0.2).astype(f32)

        tensors["token_embd.weight"] = noise(n_vocab, n_embd)
        tensors["output_norm.weight"] = np.ones(n_embd, f32)
        tensors["output.weight"] = noise(n_vocab, n_embd)
        for i in range(n_layer):
            tensors[f"blk.{i}.attn_norm.weight"] = np.ones(n_embd, f32)
            for name in ("q", "k", "v", "output"):
                tensors[f"blk.{i}.attn_{name}.weight"] = noise(n_embd, n_embd)
            tensors[f"blk.{i}.ffn_norm.weight"] = np.ones(n_embd, f32)
            tensors[f"blk.{i}.ffn_gate.weight"] = noise(n_ff, n_embd)
            tensors[f"blk.{i}.ffn_up.weight"] = noise(n_ff, n_embd)
            tensors[f"blk.{i}.ffn_down.weight"] = noise(n_embd, n_ff)
    else:
        embedding = np.zeros((n_vocab, n_embd), f32)
        embedding[np.arange(n_vocab), np.arange(n_vocab)] = 1.0  # one-hot
        keyword_dim = {k: n_vocab + j for j, k in enumerate(keyword_ids)}
        value = np.zeros((n_embd, n_embd), f32)
        for keyword, ids in keyword_ids.items():
            for token in ids:
                value[keyword_dim[keyword], token] = 1.0
        output = np.zeros((n_vocab, n_embd), f32)
        eos = vocab.index["</s>"]
        for key, chain in chains.items():
            for a, b in zip(chain, chain[1:], strict=False):
                output[b, a] = BIGRAM_LOGIT
            answer = SCRIPT.get(key)
            output[chain[0] if isinstance(answer, list) else eos, chain[-1]] = BIGRAM_LOGIT
            if key in keyword_dim:
                output[chain[0], keyword_dim[key]] = KEYWORD_LOGIT
        output[chains["__default__"][0], vocab.index["<0x0A>"]] = DEFAULT_LOGIT  # the prompt ends with "\n"
        zeros = np.zeros((n_embd, n_embd), f32)
        tensors.update(
            {
                "token_embd.weight": embedding,
                "output_norm.weight": np.ones(n_embd, f32),
                "output.weight": output,
                "blk.0.attn_norm.weight": np.ones(n_embd, f32),
                "blk.0.attn_q.weight": zeros,
                "blk.0.attn_k.weight": zeros,
                "blk.0.attn_v.weight": value,
                "blk.0.attn_output.weight": np.eye(n_embd, dtype=f32),
                "blk.0.ffn_norm.weight": np.ones(n_embd, f32),
                "blk.0.ffn_gate.weight": np.zeros((n_ff, n_embd), f32),
                "blk.0.ffn_up.weight": np.zeros((n_ff, n_embd), f32),
                "blk.0.ffn_down.weight": np.zeros((n_embd, n_ff), f32),
            }
        )
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
