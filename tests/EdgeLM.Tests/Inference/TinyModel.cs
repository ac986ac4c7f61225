using EdgeLM.Models;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Inference;

/// <summary>Options of a random in-memory model.</summary>
public sealed record TinyModelSpec(
    GgmlType WeightType = GgmlType.F32, bool Biases = true, bool Tied = false, RopeStyle Rope = RopeStyle.Neox,
    double RopeTheta = 1e6, int Layers = 2, int Hidden = 64, int Heads = 4, int KvHeads = 2, int Ff = 160,
    int Vocab = 300, int Context = 64, int Seed = 1)
{
    public override string ToString() =>
        $"{WeightType} bias={Biases} tied={Tied} {Rope} theta={RopeTheta} layers={Layers} kv={KvHeads}";
}

/// <summary>A tiny Qwen2/Llama model with random weights in NativeBuffers (F32, F16 or BF16 matrices, F32 norms and biases).</summary>
internal sealed unsafe class TinyModel : IDisposable
{
    private readonly List<NativeBuffer> _buffers = [];
    public ModelConfig Config { get; }
    public ModelWeights Weights { get; }

    public TinyModel(TinyModelSpec spec)
    {
        int headDim = spec.Hidden / spec.Heads;
        Config = new ModelConfig
        {
            Architecture = spec.Biases ? "qwen2" : "llama",
            VocabSize = spec.Vocab, HiddenSize = spec.Hidden, IntermediateSize = spec.Ff, LayerCount = spec.Layers,
            HeadCount = spec.Heads, KvHeadCount = spec.KvHeads, HeadDim = headDim, ContextLength = spec.Context,
            RopeTheta = spec.RopeTheta, RmsNormEps = 1e-6, RopeStyle = spec.Rope, TiedEmbeddings = spec.Tied,
        };
        var random = new Random(spec.Seed);
        var tensors = new Dictionary<string, Tensor>();
        void Add(string name, GgmlType type, float scale, float offset, params long[] shape)
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var values = new float[count];
            for (long i = 0; i < count; i++) values[i] = offset + scale * (float)(random.NextDouble() * 2 - 1);
            tensors[name] = MakeTensor(name, type, shape, values);
        }
        int d = spec.Hidden, q = spec.Heads * headDim, kv = spec.KvHeads * headDim, ff = spec.Ff;
        var w = spec.WeightType;
        Add("token_embd.weight", w, 1f, 0, d, spec.Vocab);
        Add("output_norm.weight", GgmlType.F32, 0.2f, 1, d);
        if (!spec.Tied) Add("output.weight", w, 1f / MathF.Sqrt(d), 0, d, spec.Vocab);
        for (int l = 0; l < spec.Layers; l++)
        {
            string p = $"blk.{l}.";
            Add(p + "attn_norm.weight", GgmlType.F32, 0.2f, 1, d);
            Add(p + "ffn_norm.weight", GgmlType.F32, 0.2f, 1, d);
            // Scales chosen so attention is neither uniform nor one-hot and the residual stream stays O(1).
            Add(p + "attn_q.weight", w, 2f / MathF.Sqrt(d), 0, d, q);
            Add(p + "attn_k.weight", w, 2f / MathF.Sqrt(d), 0, d, kv);
            Add(p + "attn_v.weight", w, 1f / MathF.Sqrt(d), 0, d, kv);
            Add(p + "attn_output.weight", w, 1f / MathF.Sqrt(q), 0, q, d);
            Add(p + "ffn_gate.weight", w, 2f / MathF.Sqrt(d), 0, d, ff);
            Add(p + "ffn_up.weight", w, 1f / MathF.Sqrt(d), 0, d, ff);
            Add(p + "ffn_down.weight", w, 1f / MathF.Sqrt(ff), 0, ff, d);
            if (spec.Biases)
            {
                Add(p + "attn_q.bias", GgmlType.F32, 0.5f, 0, q);
                Add(p + "attn_k.bias", GgmlType.F32, 0.5f, 0, kv);
                Add(p + "attn_v.bias", GgmlType.F32, 0.2f, 0, kv);
            }
        }
        Weights = new ModelWeights(Config, tensors);
    }

    private Tensor MakeTensor(string name, GgmlType type, long[] shape, float[] values)
    {
        long bytes = Tensor.ExpectedBytes(type, shape);
        var buffer = new NativeBuffer(bytes);
        _buffers.Add(buffer);
        if (type is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16))
        {
            Quantize.Rows(type, values, (int)shape[0], new Span<byte>(buffer.Pointer, checked((int)bytes)));
            return new Tensor(name, type, shape, buffer.Pointer, bytes);
        }
        for (long i = 0; i < values.Length; i++)
        {
            switch (type)
            {
                case GgmlType.F32: ((float*)buffer.Pointer)[i] = values[i]; break;
                case GgmlType.F16: ((Half*)buffer.Pointer)[i] = (Half)values[i]; break;
                case GgmlType.BF16: ((ushort*)buffer.Pointer)[i] = (ushort)(BitConverter.SingleToUInt32Bits(values[i]) >> 16); break;
                default: throw new NotSupportedException(type.ToString());
            }
        }
        return new Tensor(name, type, shape, buffer.Pointer, bytes);
    }

    public int[] RandomTokens(int count, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(Config.VocabSize)).ToArray();
    }

    public void Dispose()
    {
        foreach (var b in _buffers) b.Dispose();
    }
}
