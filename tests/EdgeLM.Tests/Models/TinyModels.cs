using EdgeLM.Formats.Gguf;
using EdgeLM.Formats.HuggingFace;
using EdgeLM.Formats.Safetensors;
using EdgeLM.Models;
using EdgeLM.Tensors;

namespace EdgeLM.Tests.Models;

/// <summary>A tiny Qwen2-shaped model with random bytes, writable as GGUF or as a Hugging Face folder.</summary>
internal sealed class TinyModel
{
    public sealed record Entry(string GgufName, GgmlType Type, long[] GgmlShape, byte[] Data);

    public ModelConfig Config { get; }
    public List<Entry> Tensors { get; } = new();

    public static ModelConfig QwenConfig(bool tied = false) => new()
    {
        Architecture = "qwen2",
        Name = "tiny-qwen",
        VocabSize = 48,
        HiddenSize = 32,
        IntermediateSize = 64,
        LayerCount = 2,
        HeadCount = 4,
        KvHeadCount = 2,
        HeadDim = 8,
        ContextLength = 128,
        RopeTheta = 1000000.0,
        RmsNormEps = 1e-6,
        RopeStyle = RopeStyle.Neox,
        TiedEmbeddings = tied,
        BosTokenId = 1,
        EosTokenId = 2,
    };

    public TinyModel(ModelConfig cfg, GgmlType weightType = GgmlType.F16, bool biases = true, int seed = 7)
    {
        Config = cfg;
        var rng = new Random(seed);
        void Add(string name, GgmlType type, params long[] shape)
        {
            var data = new byte[Tensor.ExpectedBytes(type, shape)];
            rng.NextBytes(data);
            Tensors.Add(new Entry(name, type, shape, data));
        }
        int d = cfg.HiddenSize, q = cfg.QDim, kv = cfg.KvDim, ff = cfg.IntermediateSize, v = cfg.VocabSize;
        Add("token_embd.weight", weightType, d, v);
        for (int i = 0; i < cfg.LayerCount; i++)
        {
            string p = $"blk.{i}.";
            Add(p + "attn_norm.weight", GgmlType.F32, d);
            Add(p + "attn_q.weight", weightType, d, q);
            Add(p + "attn_k.weight", weightType, d, kv);
            Add(p + "attn_v.weight", weightType, d, kv);
            if (biases)
            {
                Add(p + "attn_q.bias", GgmlType.F32, q);
                Add(p + "attn_k.bias", GgmlType.F32, kv);
                Add(p + "attn_v.bias", GgmlType.F32, kv);
            }
            Add(p + "attn_output.weight", weightType, q, d);
            Add(p + "ffn_norm.weight", GgmlType.F32, d);
            Add(p + "ffn_gate.weight", weightType, d, ff);
            Add(p + "ffn_up.weight", weightType, d, ff);
            Add(p + "ffn_down.weight", weightType, ff, d);
        }
        Add("output_norm.weight", GgmlType.F32, d);
        if (!cfg.TiedEmbeddings) Add("output.weight", weightType, d, v);
    }

    /// <summary>GGUF with the metadata keys spelled out here, independent of the loader's own key list.</summary>
    public string WriteGguf(string path, bool withTokens = false)
    {
        var w = new GgufWriter();
        var m = w.Metadata;
        string a = Config.Architecture;
        m.Set("general.architecture", GgufValue.Of(a));
        m.Set("general.name", GgufValue.Of(Config.Name));
        m.Set($"{a}.block_count", GgufValue.Of((uint)Config.LayerCount));
        m.Set($"{a}.context_length", GgufValue.Of((uint)Config.ContextLength));
        m.Set($"{a}.embedding_length", GgufValue.Of((uint)Config.HiddenSize));
        m.Set($"{a}.feed_forward_length", GgufValue.Of((uint)Config.IntermediateSize));
        m.Set($"{a}.attention.head_count", GgufValue.Of((uint)Config.HeadCount));
        m.Set($"{a}.attention.head_count_kv", GgufValue.Of((uint)Config.KvHeadCount));
        m.Set($"{a}.rope.freq_base", GgufValue.Of((float)Config.RopeTheta));
        m.Set($"{a}.attention.layer_norm_rms_epsilon", GgufValue.Of((float)Config.RmsNormEps));
        m.Set("tokenizer.ggml.bos_token_id", GgufValue.Of((uint)Config.BosTokenId!.Value));
        m.Set("tokenizer.ggml.eos_token_id", GgufValue.Of((uint)Config.EosTokenId!.Value));
        if (withTokens) m.Set("tokenizer.ggml.tokens", GgufValue.Of(Enumerable.Range(0, Config.VocabSize).Select(i => $"t{i}").ToArray()));
        foreach (var t in Tensors) w.AddTensor(t.GgufName, t.Type, t.GgmlShape, t.Data);
        w.Write(path);
        return path;
    }

    /// <summary>A Hugging Face folder; maxShardBytes small enough forces an index with shards.</summary>
    public string WriteHf(string dir, long maxShardBytes = long.MaxValue, bool extraLmHead = false)
    {
        HfFolder.WriteConfig(dir, Config, "float16");
        var w = new ShardedSafetensorsWriter(maxShardBytes);
        foreach (var t in Tensors)
            w.Add(HfTensorNames.ToHf(t.GgufName)!, t.Type, t.GgmlShape.Reverse().ToArray(), t.Data);
        if (extraLmHead)
        {
            var embd = Tensors.Single(t => t.GgufName == "token_embd.weight");
            w.Add("lm_head.weight", embd.Type, embd.GgmlShape.Reverse().ToArray(), embd.Data);
        }
        w.Write(dir);
        return dir;
    }
}
