//! Frozen decoder LLMs (Llama family, Qwen2): `embed(ids)`, a forward over embeddings with an
//! attention mask, explicit positions and per-layer hooks, `logits`, and greedy generation.
