"""The shared-prompt decoding attention against torch's SDPA over each row's full (prompt + generated) keys."""

import types

import pytest
import torch
import torch.nn.functional as F

from recbole_msl.lm.beam_attention import UserPromptState, user_prompt_attention


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("rows_per_user", [1, 3])
def test_user_prompt_attention_equals_sdpa_on_full_rows(dtype, tol, rows_per_user):
    torch.manual_seed(0)
    users, kv_heads, rep, dim, prompt, generated = 4, 2, 3, 16, 9, 5
    heads, rows = kv_heads * rep, users * rows_per_user
    prompt_keys = torch.randn(users, kv_heads, prompt, dim, dtype=dtype)
    prompt_values = torch.randn(users, kv_heads, prompt, dim, dtype=dtype)
    visible = torch.ones(users, prompt, dtype=torch.bool)
    visible[1, :4] = False  # left padding of different widths
    visible[3, :1] = False
    own_keys = torch.randn(rows, kv_heads, generated, dim, dtype=dtype)
    own_values = torch.randn(rows, kv_heads, generated, dim, dtype=dtype)
    query = torch.randn(rows, heads, 1, dim, dtype=dtype)

    layer = types.SimpleNamespace(prompt_keys=prompt_keys, prompt_values=prompt_values,
                                  prompt_visible=visible[:, None, None, :])
    state = UserPromptState([layer])
    state.rows_per_user = rows_per_user
    module = types.SimpleNamespace(layer_idx=0)
    out, _ = user_prompt_attention(module, query, own_keys, own_values, None, scaling=dim ** -0.5,
                                     user_prompts=state)

    owner = torch.arange(rows) // rows_per_user
    keys = torch.cat([prompt_keys[owner], own_keys], 2).float().repeat_interleave(rep, 1)  # [R, H, P+g, d]
    values = torch.cat([prompt_values[owner], own_values], 2).float().repeat_interleave(rep, 1)
    mask = torch.cat([visible[owner], torch.ones(rows, generated, dtype=torch.bool)], 1)[:, None, None, :]
    expected = F.scaled_dot_product_attention(query.float(), keys, values, attn_mask=mask)  # [R, H, 1, d]
    assert out.shape == (rows, 1, heads, dim) and out.dtype == dtype
    torch.testing.assert_close(out.float(), expected.transpose(1, 2), rtol=tol, atol=tol)
