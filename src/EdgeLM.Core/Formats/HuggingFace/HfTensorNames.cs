namespace EdgeLM.Formats.HuggingFace;

/// <summary>
/// Renames Hugging Face Qwen2/Qwen3/Llama tensor names (and, by model type, Qwen v1's) to the GGUF names the engine
/// uses, and back (the same mapping as llama.cpp's convert_hf_to_gguf.py tensor map for these architectures).
/// </summary>
public static class HfTensorNames
{
    private static readonly (string Hf, string Gguf)[] LayerParts =
    [
        ("input_layernorm.weight", "attn_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.q_proj.bias", "attn_q.bias"),
        ("self_attn.k_proj.bias", "attn_k.bias"),
        ("self_attn.v_proj.bias", "attn_v.bias"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("self_attn.q_norm.weight", "attn_q_norm.weight"),
        ("self_attn.k_norm.weight", "attn_k_norm.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ];

    private static readonly (string Hf, string Gguf)[] Globals =
    [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];

    // QWenLMHeadModel: fused c_attn (q, k, v rows, with bias). Its MLP computes c_proj(w1(x) * silu(w2(x))), so w2 is
    // the gated (SiLU) branch: llama.cpp maps w1 to ffn_up and w2 to ffn_gate.
    private static readonly (string Hf, string Gguf)[] QwenLayerParts =
    [
        ("ln_1.weight", "attn_norm.weight"),
        ("attn.c_attn.weight", "attn_qkv.weight"),
        ("attn.c_attn.bias", "attn_qkv.bias"),
        ("attn.c_proj.weight", "attn_output.weight"),
        ("ln_2.weight", "ffn_norm.weight"),
        ("mlp.w1.weight", "ffn_up.weight"),
        ("mlp.w2.weight", "ffn_gate.weight"),
        ("mlp.c_proj.weight", "ffn_down.weight"),
    ];

    private static readonly (string Hf, string Gguf)[] QwenGlobals =
    [
        ("transformer.wte.weight", "token_embd.weight"),
        ("transformer.ln_f.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];

    private const string QwenLayerPrefix = "transformer.h.";
    private const string HfLayerPrefix = "model.layers.";
    private const string GgufLayerPrefix = "blk.";

    /// <summary>The GGUF name for a Hugging Face tensor name, or null when the name is not part of the mapping.</summary>
    public static string? ToGguf(string hfName) => ToGguf(hfName, "qwen2");

    /// <summary>The Hugging Face name for a GGUF tensor name, or null when the name is not part of the mapping.</summary>
    public static string? ToHf(string ggufName) => ToHf(ggufName, "qwen2");

    /// <summary>The GGUF name of a tensor of a checkpoint with this config.json model_type ("qwen" has its own layout).</summary>
    public static string? ToGguf(string hfName, string modelType)
    {
        ArgumentNullException.ThrowIfNull(hfName);
        var (globals, parts, hfPrefix) = Layout(modelType);
        foreach (var (hf, gguf) in globals) if (hfName == hf) return gguf;
        return MapLayer(hfName, hfPrefix, GgufLayerPrefix, toGguf: true, parts);
    }

    /// <summary>The Hugging Face name of a GGUF tensor in the layout of this model_type.</summary>
    public static string? ToHf(string ggufName, string modelType)
    {
        ArgumentNullException.ThrowIfNull(ggufName);
        var (globals, parts, hfPrefix) = Layout(modelType);
        foreach (var (hf, gguf) in globals) if (ggufName == gguf) return hf;
        return MapLayer(ggufName, GgufLayerPrefix, hfPrefix, toGguf: false, parts);
    }

    private static ((string Hf, string Gguf)[] Globals, (string Hf, string Gguf)[] Parts, string Prefix) Layout(string modelType) =>
        modelType == "qwen" ? (QwenGlobals, QwenLayerParts, QwenLayerPrefix) : (Globals, LayerParts, HfLayerPrefix);

    private static string? MapLayer(string name, string fromPrefix, string toPrefix, bool toGguf, (string Hf, string Gguf)[] layerParts)
    {
        if (!name.StartsWith(fromPrefix, StringComparison.Ordinal)) return null;
        int dot = name.IndexOf('.', fromPrefix.Length);
        if (dot <= fromPrefix.Length) return null;
        var index = name.AsSpan(fromPrefix.Length, dot - fromPrefix.Length);
        // Only canonical decimal layer numbers, so that "blk.01" and "blk.1" cannot both map to the same name.
        if (!int.TryParse(index, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int layer)
            || layer.ToString(System.Globalization.CultureInfo.InvariantCulture) != index.ToString())
            return null;
        string rest = name[(dot + 1)..];
        foreach (var (hf, gguf) in layerParts)
        {
            if (rest == (toGguf ? hf : gguf)) return $"{toPrefix}{layer}.{(toGguf ? gguf : hf)}";
        }
        return null;
    }
}
