using EdgeLM.Tensors;

namespace EdgeLM.Models;

/// <summary>One transformer block's tensors. Biases are null when the architecture has none.</summary>
public sealed record LayerWeights(
    Tensor AttnNorm,
    Tensor Wq, Tensor Wk, Tensor Wv, Tensor Wo,
    Tensor? Bq, Tensor? Bk, Tensor? Bv,
    Tensor FfnNorm,
    Tensor Gate, Tensor Up, Tensor Down);

/// <summary>
/// All tensors of a Qwen2/Llama-style model, looked up by GGUF tensor names
/// (token_embd.weight, blk.N.attn_q.weight, ..., output_norm.weight, output.weight).
/// Loaders for other layouts (Hugging Face) rename to these names first.
/// </summary>
public sealed class ModelWeights
{
    public Tensor TokenEmbedding { get; }
    public Tensor OutputNorm { get; }
    /// <summary>The output head; the token embedding itself when tied.</summary>
    public Tensor Output { get; }
    public LayerWeights[] Layers { get; }

    public ModelWeights(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors)
    {
        Tensor Get(string name, params long[] shape)
        {
            if (!tensors.TryGetValue(name, out var t)) throw new InvalidDataException($"missing tensor '{name}'");
            if (shape.Length > 0 && !t.Shape.SequenceEqual(shape))
                throw new InvalidDataException($"tensor '{name}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", shape)}]");
            return t;
        }
        Tensor? Opt(string name, params long[] shape) => tensors.ContainsKey(name) ? Get(name, shape) : null;

        int d = config.HiddenSize, q = config.QDim, kv = config.KvDim, ff = config.IntermediateSize, v = config.VocabSize;
        TokenEmbedding = Get("token_embd.weight", d, v);
        OutputNorm = Get("output_norm.weight", d);
        Output = Opt("output.weight", d, v) ?? TokenEmbedding;
        Layers = new LayerWeights[config.LayerCount];
        for (int i = 0; i < config.LayerCount; i++)
        {
            string p = $"blk.{i}.";
            Layers[i] = new LayerWeights(
                Get(p + "attn_norm.weight", d),
                Get(p + "attn_q.weight", d, q), Get(p + "attn_k.weight", d, kv), Get(p + "attn_v.weight", d, kv),
                Get(p + "attn_output.weight", q, d),
                Opt(p + "attn_q.bias", q), Opt(p + "attn_k.bias", kv), Opt(p + "attn_v.bias", kv),
                Get(p + "ffn_norm.weight", d),
                Get(p + "ffn_gate.weight", d, ff), Get(p + "ffn_up.weight", d, ff), Get(p + "ffn_down.weight", ff, d));
        }
    }
}
