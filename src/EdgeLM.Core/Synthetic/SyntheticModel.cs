using EdgeLM.Formats.Gguf;
using EdgeLM.Inference;
using EdgeLM.Formats.HuggingFace;
using EdgeLM.Formats.Safetensors;
using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;
using EdgeLM.Tokenization;

namespace EdgeLM.Synthetic;

/// <summary>
/// Random-weight models with the exact tensor shapes of a real architecture. Every tensor's values depend only
/// on (seed, tensor name), so the same model can be written as GGUF and as a Hugging Face folder and both load to
/// identical weights. Values are rounded through the storage type first, so 1-D tensors that GGUF keeps in F32 hold
/// exactly the values the Hugging Face copy stores in F16/BF16.
/// </summary>
public static class SyntheticModel
{
    public enum Kind { Matrix, Embedding, Norm, Bias }

    public sealed record TensorSpec(string Name, long[] Shape, Kind Kind)
    {
        public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
    }

    /// <summary>
    /// Tensors of a model in GGUF names and ggml shape order, in its family's own layout: Qwen (v1) has one fused
    /// attn_qkv matrix and bias; Qwen3 has per-head q/k norms and no q/k/v biases.
    /// </summary>
    public static IReadOnlyList<TensorSpec> Plan(ModelConfig c, bool qkvBias = true)
    {
        ArgumentNullException.ThrowIfNull(c);
        long d = c.HiddenSize, q = c.QDim, kv = c.KvDim, ff = c.IntermediateSize, v = c.VocabSize;
        bool fusedQkv = c.Architecture == "qwen", qkNorm = c.Architecture == "qwen3";
        if (qkNorm) qkvBias = false;
        var specs = new List<TensorSpec> { new("token_embd.weight", [d, v], Kind.Embedding) };
        for (int i = 0; i < c.LayerCount; i++)
        {
            string p = $"blk.{i}.";
            specs.Add(new(p + "attn_norm.weight", [d], Kind.Norm));
            if (fusedQkv)
            {
                specs.Add(new(p + "attn_qkv.weight", [d, q + 2 * kv], Kind.Matrix));
                specs.Add(new(p + "attn_qkv.bias", [q + 2 * kv], Kind.Bias));
            }
            else
            {
                specs.Add(new(p + "attn_q.weight", [d, q], Kind.Matrix));
                specs.Add(new(p + "attn_k.weight", [d, kv], Kind.Matrix));
                specs.Add(new(p + "attn_v.weight", [d, kv], Kind.Matrix));
            }
            if (qkvBias && !fusedQkv)
            {
                specs.Add(new(p + "attn_q.bias", [q], Kind.Bias));
                specs.Add(new(p + "attn_k.bias", [kv], Kind.Bias));
                specs.Add(new(p + "attn_v.bias", [kv], Kind.Bias));
            }
            if (qkNorm)
            {
                specs.Add(new(p + "attn_q_norm.weight", [c.HeadDim], Kind.Norm));
                specs.Add(new(p + "attn_k_norm.weight", [c.HeadDim], Kind.Norm));
            }
            specs.Add(new(p + "attn_output.weight", [q, d], Kind.Matrix));
            specs.Add(new(p + "ffn_norm.weight", [d], Kind.Norm));
            specs.Add(new(p + "ffn_gate.weight", [d, ff], Kind.Matrix));
            specs.Add(new(p + "ffn_up.weight", [d, ff], Kind.Matrix));
            specs.Add(new(p + "ffn_down.weight", [ff, d], Kind.Matrix));
        }
        specs.Add(new("output_norm.weight", [d], Kind.Norm));
        if (!c.TiedEmbeddings) specs.Add(new("output.weight", [d, v], Kind.Matrix));
        return specs;
    }

    public static long ParameterCount(ModelConfig c) => Plan(c).Sum(s => s.Elements);

    /// <summary>Writes a GGUF model. Matrices use <paramref name="type"/>; 1-D tensors are F32 as llama.cpp stores them.</summary>
    public static void WriteGguf(string path, ModelConfig c, GgmlType type, ulong seed, BpeTokenizer? tokenizer, IProgress<double>? progress = null)
    {
        CheckStorageType(type);
        var w = new GgufWriter();
        var md = w.Metadata;
        string a = c.Architecture;
        md.Set("general.architecture", GgufValue.Of(a));
        md.Set("general.name", GgufValue.Of(c.Name));
        md.Set("general.file_type", GgufValue.Of((uint)(type switch { GgmlType.F32 => 0, GgmlType.F16 => 1, _ => 32 })));
        md.Set($"{a}.block_count", GgufValue.Of((uint)c.LayerCount));
        md.Set($"{a}.context_length", GgufValue.Of((uint)c.ContextLength));
        md.Set($"{a}.embedding_length", GgufValue.Of((uint)c.HiddenSize));
        bool qwen1 = a == "qwen";
        // llama.cpp's converter writes Qwen v1's config.json intermediate_size, twice the MLP width, and no kv head count.
        md.Set($"{a}.feed_forward_length", GgufValue.Of((uint)(qwen1 ? 2 * c.IntermediateSize : c.IntermediateSize)));
        md.Set($"{a}.attention.head_count", GgufValue.Of((uint)c.HeadCount));
        if (qwen1) md.Set($"{a}.rope.dimension_count", GgufValue.Of((uint)c.HeadDim));
        else md.Set($"{a}.attention.head_count_kv", GgufValue.Of((uint)c.KvHeadCount));
        if (c.HeadDim * c.HeadCount != c.HiddenSize || a == "qwen3")
        {
            md.Set($"{a}.attention.key_length", GgufValue.Of((uint)c.HeadDim));
            md.Set($"{a}.attention.value_length", GgufValue.Of((uint)c.HeadDim));
        }
        md.Set($"{a}.rope.freq_base", GgufValue.Of((float)c.RopeTheta));
        md.Set($"{a}.attention.layer_norm_rms_epsilon", GgufValue.Of((float)c.RmsNormEps));
        // Qwen v1 GGUFs carry the merges llama.cpp derives from qwen.tiktoken's ranks.
        if (qwen1 && tokenizer is { IsRankBased: false }) tokenizer = tokenizer.ToQwenTiktoken();
        (tokenizer ?? BpeTokenizer.CreateByteLevel(c.VocabSize)).WriteToGgufMetadata(md, c.VocabSize);

        var plan = Plan(c);
        long total = plan.Sum(s => s.Elements), done = 0;
        foreach (var spec in plan)
        {
            var t = spec.Shape.Length == 1 ? GgmlType.F32 : type;
            w.AddTensor(spec.Name, t, spec.Shape, stream =>
            {
                WriteValues(stream, spec, t, type, seed);
                done += spec.Elements;
                progress?.Report((double)done / total);
            });
        }
        w.Write(path);
    }

    /// <summary>Writes the same weights as a Hugging Face folder (config.json, safetensors, tokenizer files).</summary>
    public static void WriteHuggingFace(string dir, ModelConfig c, GgmlType type, ulong seed, string? tokenizerJson, IProgress<double>? progress = null)
    {
        CheckStorageType(type);
        Directory.CreateDirectory(dir);
        var writer = new ShardedSafetensorsWriter(maxShardBytes: 4L << 30);
        var plan = Plan(c);
        long total = plan.Sum(s => s.Elements), done = 0;
        foreach (var spec in plan)
        {
            long[] torchShape = spec.Shape.Reverse().ToArray();
            writer.Add(HfTensorNames.ToHf(spec.Name, c.Architecture) ?? throw new InvalidOperationException($"no Hugging Face name for {spec.Name}"), type, torchShape, stream =>
            {
                WriteValues(stream, spec, type, type, seed);
                done += spec.Elements;
                progress?.Report((double)done / total);
            });
        }
        writer.Write(dir);
        HfFolder.WriteConfig(dir, c, type switch { GgmlType.F32 => "float32", GgmlType.F16 => "float16", _ => "bfloat16" });
        if (tokenizerJson != null && c.Architecture == "qwen")
        {
            // Qwen v1 folders ship qwen.tiktoken (ranks = the ordinary token ids) read by the remote-code QWenTokenizer.
            BpeTokenizer.FromTokenizerJson(tokenizerJson).WriteTiktoken(Path.Combine(dir, HfFolder.TiktokenFileName));
            WriteQwenTokenizerConfig(Path.Combine(dir, "tokenizer_config.json"), c.ContextLength);
        }
        else if (tokenizerJson != null)
        {
            File.Copy(tokenizerJson, Path.Combine(dir, "tokenizer.json"), overwrite: true);
            string cfg = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(tokenizerJson))!, "tokenizer_config.json");
            if (File.Exists(cfg)) File.Copy(cfg, Path.Combine(dir, "tokenizer_config.json"), overwrite: true);
        }
    }

    private static void WriteQwenTokenizerConfig(string path, int contextLength)
    {
        EdgeLM.Formats.AtomicFile.Write(path, fs =>
        {
            using var j = new System.Text.Json.Utf8JsonWriter(fs, new System.Text.Json.JsonWriterOptions { Indented = true });
            j.WriteStartObject();
            j.WriteStartObject("auto_map");
            j.WriteStartArray("AutoTokenizer");
            j.WriteStringValue("tokenization_qwen.QWenTokenizer");
            j.WriteNullValue();
            j.WriteEndArray();
            j.WriteEndObject();
            j.WriteString("clean_up_tokenization_spaces", "false");
            j.WriteNumber("model_max_length", contextLength);
            j.WriteString("tokenizer_class", "QWenTokenizer");
            j.WriteEndObject();
        });
    }

    /// <summary>The float values of one tensor (after rounding through <paramref name="valueType"/>); for tests.</summary>
    public static float[] Values(TensorSpec spec, GgmlType valueType, ulong seed)
    {
        var result = new float[checked((int)spec.Elements)];
        var rng = RngFor(seed, spec.Name);
        Fill(ref rng, spec.Kind, result);
        RoundThrough(valueType, result);
        return result;
    }

    private static void CheckStorageType(GgmlType type)
    {
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
            throw new ArgumentException($"synthetic models are written in f32, f16 or bf16 (got {type}); quantize them afterwards");
    }

    private static void WriteValues(Stream stream, TensorSpec spec, GgmlType storeAs, GgmlType valueType, ulong seed)
    {
        const int Chunk = 1 << 16;
        var values = new float[Chunk];
        var bytes = new byte[Chunk * 4];
        var rng = RngFor(seed, spec.Name);
        for (long off = 0; off < spec.Elements; off += Chunk)
        {
            int n = (int)Math.Min(Chunk, spec.Elements - off);
            var v = values.AsSpan(0, n);
            Fill(ref rng, spec.Kind, v);
            RoundThrough(valueType, v);
            int nb = (int)GgmlTypeInfo.RowBytes(storeAs, n);
            Quantize.Row(storeAs, v, bytes.AsSpan(0, nb));
            stream.Write(bytes, 0, nb);
        }
    }

    // Scales chosen so that activations neither explode nor vanish through the layers: uniform with
    // standard deviation 0.02 (the usual initializer), norms near 1, small biases.
    private static void Fill(ref Xoshiro256StarStar rng, Kind kind, Span<float> dst)
    {
        const float Std = 0.02f;
        float half = kind switch { Kind.Norm => 0.1f, Kind.Bias => 0.05f, _ => Std * MathF.Sqrt(3f) };
        float center = kind == Kind.Norm ? 1f : 0f;
        for (int i = 0; i < dst.Length; i++) dst[i] = center + half * (2f * ((rng.NextUInt64() >> 40) * (1f / (1 << 24))) - 1f);
    }

    private static void RoundThrough(GgmlType type, Span<float> v)
    {
        if (type == GgmlType.F32) return;
        Span<byte> tmp = stackalloc byte[2 * 256];
        for (int i = 0; i < v.Length; i += 256)
        {
            var part = v.Slice(i, Math.Min(256, v.Length - i));
            var bytes = tmp[..(2 * part.Length)];
            Quantize.Row(type, part, bytes);
            Dequantize.Row(type, bytes, part);
        }
    }

    /// <summary>A generator per (seed, tensor name); FNV-1a because string.GetHashCode is randomized per process.</summary>
    private static Xoshiro256StarStar RngFor(ulong seed, string name)
    {
        ulong h = 14695981039346656037UL;
        foreach (char ch in name) { h ^= ch; h *= 1099511628211UL; }
        return new Xoshiro256StarStar(seed ^ h);
    }
}
