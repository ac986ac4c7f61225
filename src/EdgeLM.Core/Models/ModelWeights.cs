using EdgeLM.Tensors;

namespace EdgeLM.Models;

/// <summary>One transformer block's tensors. Biases are null when the architecture has none.</summary>
public sealed record LayerWeights(
    Tensor AttnNorm,
    Tensor Wq, Tensor Wk, Tensor Wv, Tensor Wo,
    Tensor? Bq, Tensor? Bk, Tensor? Bv,
    Tensor FfnNorm,
    Tensor Gate, Tensor Up, Tensor Down)
{
    /// <summary>Qwen3's per-head RMSNorm weights (head_dim values), applied to q and k after projection and before RoPE.</summary>
    public Tensor? QNorm { get; init; }
    public Tensor? KNorm { get; init; }
}

/// <summary>
/// All tensors of a Qwen2/Llama-style model, looked up by GGUF tensor names
/// (token_embd.weight, blk.N.attn_q.weight, ..., output_norm.weight, output.weight).
/// Loaders for other layouts (Hugging Face) rename to these names first.
/// Qwen (v1) checkpoints store q, k and v as one fused attn_qkv matrix and bias; they are split here into
/// views of the mapped rows (q rows, then k, then v, as llama.cpp's build_qwen views them), never copied.
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
        bool qkNormRequired = config.Architecture == "qwen3";
        for (int i = 0; i < config.LayerCount; i++)
        {
            string p = $"blk.{i}.";
            Tensor wq, wk, wv;
            Tensor? bq, bk, bv;
            if (!tensors.ContainsKey(p + "attn_q.weight") && tensors.ContainsKey(p + "attn_qkv.weight"))
            {
                var fused = Get(p + "attn_qkv.weight", d, q + 2 * kv);
                wq = RowSlice(fused, p + "attn_q.weight", 0, q);
                wk = RowSlice(fused, p + "attn_k.weight", q, kv);
                wv = RowSlice(fused, p + "attn_v.weight", q + kv, kv);
                var fusedBias = Opt(p + "attn_qkv.bias", q + 2 * kv);
                bq = fusedBias is null ? null : RowSlice(fusedBias, p + "attn_q.bias", 0, q);
                bk = fusedBias is null ? null : RowSlice(fusedBias, p + "attn_k.bias", q, kv);
                bv = fusedBias is null ? null : RowSlice(fusedBias, p + "attn_v.bias", q + kv, kv);
            }
            else
            {
                wq = Get(p + "attn_q.weight", d, q); wk = Get(p + "attn_k.weight", d, kv); wv = Get(p + "attn_v.weight", d, kv);
                bq = Opt(p + "attn_q.bias", q); bk = Opt(p + "attn_k.bias", kv); bv = Opt(p + "attn_v.bias", kv);
            }
            Layers[i] = new LayerWeights(
                Get(p + "attn_norm.weight", d),
                wq, wk, wv,
                Get(p + "attn_output.weight", q, d),
                bq, bk, bv,
                Get(p + "ffn_norm.weight", d),
                Get(p + "ffn_gate.weight", d, ff), Get(p + "ffn_up.weight", d, ff), Get(p + "ffn_down.weight", ff, d))
            {
                QNorm = qkNormRequired ? Get(p + "attn_q_norm.weight", config.HeadDim) : Opt(p + "attn_q_norm.weight", config.HeadDim),
                KNorm = qkNormRequired ? Get(p + "attn_k_norm.weight", config.HeadDim) : Opt(p + "attn_k_norm.weight", config.HeadDim),
            };
            if ((Layers[i].QNorm is null) != (Layers[i].KNorm is null))
                throw new InvalidDataException($"layer {i} has only one of attn_q_norm and attn_k_norm");
        }
    }

    /// <summary>
    /// A view of <paramref name="count"/> consecutive rows of a matrix (or elements of a vector) starting at
    /// <paramref name="first"/>, pointing into the same memory.
    /// </summary>
    internal static unsafe Tensor RowSlice(Tensor t, string name, long first, long count)
    {
        if (t.Shape.Length == 1)
        {
            long block = GgmlTypeInfo.BlockSize(t.Type);
            if (first % block != 0 || count % block != 0)
                throw new InvalidDataException($"tensor '{t.Name}' ({t.Type}) cannot be split at element {first}");
            return new Tensor(name, t.Type, [count], t.Data + GgmlTypeInfo.RowBytes(t.Type, first), GgmlTypeInfo.RowBytes(t.Type, count));
        }
        if (t.Shape.Length != 2 || first < 0 || count <= 0 || first + count > t.Shape[1])
            throw new InvalidDataException($"tensor '{t.Name}' [{string.Join(", ", t.Shape)}] has no rows {first}..{first + count}");
        long stride = t.RowStride;
        return new Tensor(name, t.Type, [t.Shape[0], count], t.Data + first * stride, count * stride);
    }
}
