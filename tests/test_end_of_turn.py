"""Completions end at the tokenizer's end of sequence or its chat template's end of turn, whatever the family."""

from transformers import AutoTokenizer

from mmr1.models.base import ModelAdapter, end_of_turn_ids

LLAMA_STYLE = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] }}<|eot_id|>{% endfor %}"
               "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


def _tokenizer(tiny_vl):
    return AutoTokenizer.from_pretrained(tiny_vl)


def test_qwen_template_end_of_turn_is_im_end_even_when_eos_is_endoftext(tiny_vl):
    tok = _tokenizer(tiny_vl)
    im_end, endoftext = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert im_end != endoftext
    tok.eos_token = "<|endoftext|>"              # as in Qwen2.5 base checkpoints
    assert end_of_turn_ids(tok) == {im_end}
    assert ModelAdapter(tok).eos_token_ids == sorted({im_end, endoftext})


def test_other_families_end_at_their_own_turn_token(tiny_vl):
    tok = _tokenizer(tiny_vl)
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = LLAMA_STYLE
    tok.eos_token = "<|endoftext|>"
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert end_of_turn_ids(tok) == {eot}
    assert ModelAdapter(tok).eos_token_ids == sorted({eot, tok.convert_tokens_to_ids("<|endoftext|>")})


def test_without_a_chat_template_only_eos_ends(tiny_vl):
    tok = _tokenizer(tiny_vl)
    tok.chat_template = None
    tok.eos_token = "<|endoftext|>"
    assert end_of_turn_ids(tok) == set()
    assert ModelAdapter(tok).eos_token_ids == [tok.convert_tokens_to_ids("<|endoftext|>")]
