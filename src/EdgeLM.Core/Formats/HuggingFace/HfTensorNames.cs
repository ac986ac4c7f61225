namespace EdgeLM.Formats.HuggingFace;

/// <summary>
/// Renames Hugging Face Qwen2/Llama tensor names to the GGUF names the engine uses, and back
/// (the same mapping as llama.cpp's convert_hf_to_gguf.py tensor map for these architectures).
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

    private const string HfLayerPrefix = "model.layers.";
    private const string GgufLayerPrefix = "blk.";

    /// <summary>The GGUF name for a Hugging Face tensor name, or null when the name is not part of the mapping.</summary>
    public static string? ToGguf(string hfName)
    {
        foreach (var (hf, gguf) in Globals) if (hfName == hf) return gguf;
        return MapLayer(hfName, HfLayerPrefix, GgufLayerPrefix, toGguf: true);
    }

    /// <summary>The Hugging Face name for a GGUF tensor name, or null when the name is not part of the mapping.</summary>
    public static string? ToHf(string ggufName)
    {
        foreach (var (hf, gguf) in Globals) if (ggufName == gguf) return hf;
        return MapLayer(ggufName, GgufLayerPrefix, HfLayerPrefix, toGguf: false);
    }

    private static string? MapLayer(string name, string fromPrefix, string toPrefix, bool toGguf)
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
        foreach (var (hf, gguf) in LayerParts)
        {
            if (rest == (toGguf ? hf : gguf)) return $"{toPrefix}{layer}.{(toGguf ? gguf : hf)}";
        }
        return null;
    }
}
