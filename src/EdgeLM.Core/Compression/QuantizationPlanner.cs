using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Compression;

/// <summary>A tensor as the planner sees it: name, stored type and ggml-order shape (no data).</summary>
public sealed record TensorDescriptor(string Name, GgmlType Type, long[] Shape);

/// <summary>The planner's decision for one tensor. <see cref="Note"/> explains choices that differ from the recipe's default.</summary>
public sealed record PlannedTensor(string Name, long[] Shape, GgmlType SourceType, GgmlType Type, string? Note)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => checked(a * b));
    public long Bytes => Tensor.ExpectedBytes(Type, Shape);
    public bool IsCopy => Type == SourceType;
}

/// <summary>
/// Chooses each tensor's type the way llama.cpp's llama-quantize does (llama_tensor_get_type in src/llama-quant.cpp)
/// for the non-imatrix file types EdgeLM supports, so a file quantized here has the same type mix as one from
/// llama.cpp: 1-D tensors and norms keep their type, the output head (or, when tied, the token embedding) gets
/// Q6_K or Q8_0, the _M recipes give more bits to some attn_v / ffn_down layers, and k-quants of rows that are not a
/// multiple of 256 fall back to a 32-block type. Tensors come back in llama.cpp's file order.
/// </summary>
public static class QuantizationPlanner
{
    private enum Category { TokenEmbd, AttentionQ, AttentionV, AttentionK, AttentionQkv, AttentionKvB, AttentionOutput, FfnUp, FfnGate, FfnDown, Output, Other }

    /// <summary>The per-file state llama.cpp keeps while choosing types: layer counters advance tensor by tensor.</summary>
    private sealed class State
    {
        public int AttentionVCount, AttentionVIndex, FfnDownIndex, FfnGateIndex, FfnUpIndex;
        public bool TiedEmbeddings = true;
    }

    public static IReadOnlyList<PlannedTensor> Plan(ModelConfig config, IEnumerable<TensorDescriptor> tensors,
        LlamaFileType fileType, IReadOnlyList<TensorTypeOverride>? overrides = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        overrides ??= [];
        GgmlType defaultType = LlamaFileTypes.DefaultTensorType(fileType);
        var ordered = tensors.OrderBy(t => t.Name, LlamaTensorOrder.Instance).ToList();

        var state = new State();
        foreach (var t in ordered)
        {
            var category = CategoryOf(t.Name);
            if (IsAttentionVLike(category)) state.AttentionVCount++;
            if (category == Category.Output) state.TiedEmbeddings = false;
        }
        var hp = new HyperParameters(config);

        var plan = new List<PlannedTensor>(ordered.Count);
        foreach (var t in ordered)
        {
            if (!AllowsQuantization(t))
            {
                plan.Add(new PlannedTensor(t.Name, t.Shape, t.Type, t.Type, null));
                continue;
            }
            string? note = null;
            GgmlType type = defaultType;
            bool manual = false;
            foreach (var o in overrides)
            {
                if (!o.Matches(t.Name)) continue;
                type = o.Type;
                manual = true;
                note = $"override {o}";
                break;
            }
            // As in llama.cpp, a manual choice skips the recipe, including its layer counters.
            if (!manual && LlamaFileTypes.IsQuantized(defaultType))
                type = RecipeType(state, hp, t, type, fileType, CategoryOf(t.Name));
            if (LlamaFileTypes.IsQuantized(type))
            {
                var fallback = Fallback(t, type);
                if (fallback != type)
                {
                    note = (note != null ? note + "; " : "") + $"row length {t.Shape[0]} is not a multiple of {GgmlTypeInfo.BlockSize(type)}: {type} -> {fallback}";
                    type = fallback;
                }
            }
            plan.Add(new PlannedTensor(t.Name, t.Shape, t.Type, type, note));
        }
        return plan;
    }

    private readonly record struct HyperParameters(string Arch, int LayerCount, int Gqa, bool Is70B)
    {
        public HyperParameters(ModelConfig c) : this(c.Architecture, c.LayerCount,
            c.KvHeadCount > 0 ? c.HeadCount / c.KvHeadCount : 0,
            // llama.cpp's LLM_TYPE_70B: an 80-layer llama with grouped-query attention.
            c.Architecture == "llama" && c.LayerCount == 80 && c.HeadCount != c.KvHeadCount) { }

        public bool IsFalcon => Arch == "falcon";
    }

    // tensor_get_category: the first matching rule decides.
    private static Category CategoryOf(string name)
    {
        if (name == "output.weight") return Category.Output;
        if (name is "token_embd.weight" or "per_layer_token_embd.weight") return Category.TokenEmbd;
        if (name.Contains("attn_qkv.weight", StringComparison.Ordinal)) return Category.AttentionQkv;
        if (name.Contains("attn_kv_b.weight", StringComparison.Ordinal)) return Category.AttentionKvB;
        if (name.Contains("attn_v.weight", StringComparison.Ordinal)) return Category.AttentionV;
        if (name.Contains("attn_k.weight", StringComparison.Ordinal)) return Category.AttentionK;
        if (name.Contains("attn_q.weight", StringComparison.Ordinal)) return Category.AttentionQ;
        if (name.Contains("attn_output.weight", StringComparison.Ordinal)) return Category.AttentionOutput;
        if (name.Contains("ffn_up", StringComparison.Ordinal)) return Category.FfnUp;
        if (name.Contains("ffn_gate", StringComparison.Ordinal)) return Category.FfnGate;
        if (name.Contains("ffn_down", StringComparison.Ordinal)) return Category.FfnDown;
        return Category.Other;
    }

    private static bool IsAttentionVLike(Category c) => c is Category.AttentionV or Category.AttentionQkv or Category.AttentionKvB;

    // Substrings of weights llama.cpp never quantizes (small or precision-critical tensors of other architectures).
    private static readonly string[] NeverQuantized =
    [
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
        "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight", "attn_rel_b.weight",
        ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger",
        "a.rvq.codebook", "mm.a.code_embd",
    ];

    /// <summary>tensor_allows_quantization: matrices (2-D or more) whose name ends in "weight", minus the exceptions.</summary>
    public static bool AllowsQuantization(TensorDescriptor t)
    {
        if (DimensionCount(t.Shape) < 2) return false;
        string name = t.Name;
        if (!name.EndsWith("weight", StringComparison.Ordinal)) return false;
        if (name is "position_embd.weight" or "token_types.weight") return false;
        foreach (var s in NeverQuantized)
            if (name.Contains(s, StringComparison.Ordinal)) return false;
        return true;
    }

    // ggml_n_dims: trailing dimensions of 1 do not count.
    private static int DimensionCount(long[] shape)
    {
        for (int i = shape.Length - 1; i >= 1; i--)
            if (shape[i] != 1) return i + 1;
        return 1;
    }

    private static bool UseMoreBits(int layer, int layers) =>
        layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    /// <summary>llama_tensor_get_type_impl restricted to the file types of <see cref="LlamaFileType"/> (no experts, no imatrix).</summary>
    private static GgmlType RecipeType(State qs, HyperParameters hp, TensorDescriptor t, GgmlType type, LlamaFileType ftype, Category category)
    {
        if (category == Category.Output || (qs.TiedEmbeddings && category == Category.TokenEmbd))
        {
            // A tied embedding is also the output head, so it gets the head's type.
            long nx = t.Shape[0];
            if (hp.IsFalcon || nx % GgmlTypeInfo.BlockSize(type) != 0) type = GgmlType.Q8_0;
            else if (type != GgmlType.Q8_0) type = GgmlType.Q6_K;
        }
        else if (category == Category.TokenEmbd)
        {
            // Only the IQ and ternary recipes change an untied embedding.
        }
        else if (IsAttentionVLike(category))
        {
            if (ftype == LlamaFileType.MostlyQ2_K) type = hp.Gqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (ftype == LlamaFileType.MostlyQ3_K_M) type = qs.AttentionVIndex < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (ftype == LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q5_K;
            else if (ftype is LlamaFileType.MostlyQ4_K_M or LlamaFileType.MostlyQ5_K_M && UseMoreBits(qs.AttentionVIndex, qs.AttentionVCount)) type = GgmlType.Q6_K;
            else if (ftype == LlamaFileType.MostlyQ4_K_S && qs.AttentionVIndex < 4) type = GgmlType.Q5_K;
            // 70B shares each attn_v across 8 heads, so it is 8x smaller than attn_q: more bits cost little.
            if (hp.Is70B && type is GgmlType.Q3_K or GgmlType.Q4_K) type = GgmlType.Q5_K;
            qs.AttentionVIndex++;
        }
        else if (category == Category.FfnDown)
        {
            int layer = qs.FfnDownIndex, layers = hp.LayerCount;
            if (ftype == LlamaFileType.MostlyQ2_K) type = GgmlType.Q3_K;
            else if (ftype == LlamaFileType.MostlyQ3_K_M)
                type = layer < layers / 16 ? GgmlType.Q5_K : !hp.IsFalcon || UseMoreBits(layer, layers) ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (ftype == LlamaFileType.MostlyQ3_K_L) type = hp.IsFalcon ? GgmlType.Q4_K : GgmlType.Q5_K;
            else if (ftype == LlamaFileType.MostlyQ4_K_M)
            {
                if (hp.IsFalcon) type = layer < layers / 16 ? GgmlType.Q6_K : UseMoreBits(layer, layers) ? GgmlType.Q5_K : GgmlType.Q4_K;
                else if (UseMoreBits(layer, layers)) type = GgmlType.Q6_K;
            }
            else if (ftype == LlamaFileType.MostlyQ5_K_M && UseMoreBits(layer, layers)) type = GgmlType.Q6_K;
            else if (ftype == LlamaFileType.MostlyQ4_K_S && !hp.IsFalcon && layer < layers / 8) type = GgmlType.Q5_K;
            qs.FfnDownIndex++;
        }
        else if (category == Category.AttentionOutput)
        {
            if (!hp.IsFalcon)
            {
                if (ftype == LlamaFileType.MostlyQ2_K) type = GgmlType.Q3_K;
                else if (ftype == LlamaFileType.MostlyQ3_K_M) type = GgmlType.Q4_K;
                else if (ftype == LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q5_K;
            }
            else if (ftype == LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q4_K;
        }
        else if (category == Category.AttentionQkv)
        {
            if (ftype is LlamaFileType.MostlyQ3_K_M or LlamaFileType.MostlyQ3_K_L) type = GgmlType.Q4_K;
            else if (ftype == LlamaFileType.MostlyQ4_K_M) type = GgmlType.Q5_K;
            else if (ftype == LlamaFileType.MostlyQ5_K_M) type = GgmlType.Q6_K;
        }
        else if (category == Category.FfnGate) qs.FfnGateIndex++;
        else if (category == Category.FfnUp) qs.FfnUpIndex++;
        return type;
    }

    /// <summary>tensor_type_fallback: a type whose block does not divide the row length is replaced by a compatible one.</summary>
    private static GgmlType Fallback(TensorDescriptor t, GgmlType type)
    {
        long columns = t.Shape[0];
        if (columns % GgmlTypeInfo.BlockSize(type) == 0) return type;
        GgmlType result = type switch
        {
            GgmlType.Q2_K or GgmlType.Q3_K => GgmlType.Q4_0,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => throw new InvalidDataException($"tensor '{t.Name}': row length {columns} is not a multiple of the {type} block size {GgmlTypeInfo.BlockSize(type)}, and llama.cpp defines no fallback for {type}"),
        };
        // Rows that are not even a multiple of 32 can only be stored unblocked.
        return columns % GgmlTypeInfo.BlockSize(result) == 0 ? result : GgmlType.F16;
    }
}

/// <summary>
/// llama.cpp's weight_name_comparer, the tensor order of the files it writes: tensors outside blocks first, then
/// block by block (blk.N.), each group in ordinal name order.
/// </summary>
public sealed class LlamaTensorOrder : IComparer<string>
{
    public static LlamaTensorOrder Instance { get; } = new();

    public int Compare(string? a, string? b)
    {
        int la = Layer(a ?? ""), lb = Layer(b ?? "");
        if (la != lb) return la.CompareTo(lb);
        return string.CompareOrdinal(a, b);
    }

    // sscanf(name, "blk.%d.", &layer), leaving -1 when there is no number.
    private static int Layer(string name)
    {
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
        int i = 4;
        while (i < name.Length && char.IsWhiteSpace(name[i])) i++;
        bool negative = false;
        if (i < name.Length && name[i] is '+' or '-') negative = name[i++] == '-';
        long value = 0;
        int start = i;
        while (i < name.Length && char.IsAsciiDigit(name[i]) && value <= int.MaxValue) value = value * 10 + (name[i++] - '0');
        if (i == start) return -1;
        value = Math.Min(value, int.MaxValue);
        return (int)(negative ? -value : value);
    }
}
