using BenchmarkDotNet.Attributes;
using EdgeLM.Kernels;
using EdgeLM.Tensors;

namespace EdgeLM.Benchmarks;

/// <summary>Shared setup: one weight matrix, its input and output rows, and a worker pool of the given size.</summary>
public abstract class MatMulBenchmarkBase
{
    /// <summary>
    /// GEMV streams at least this many weight bytes, cycling through copies of the matrix: one copy of the FFN shapes
    /// (3-4 MB) stays in the 32 MB L3 and would measure the cache, while decode reads each weight from memory once
    /// per token.
    /// </summary>
    private const long GemvStreamBytes = 256L << 20;

    private readonly List<(Tensor Weight, NativeBuffer Buffer)> _weights = [];
    private int _next;
    private WorkerPool? _pool;
    private float[] _x = [], _y = [];

    public abstract MatMulCase CurrentCase { get; }

    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>Whether the weight runs on the repacked panel kernels (<see cref="MatMulCase.Repackable"/>).</summary>
    protected virtual bool Repacked => false;

    [GlobalSetup]
    public void Setup()
    {
        var c = CurrentCase;
        int copies = c.Tokens == 1 ? (int)Math.Max(1, GemvStreamBytes / c.WeightBytes) : 1;
        for (int i = 0; i < copies; i++)
        {
            var (weight, buffer) = WeightFactory.Create(c.Type, c.Out, c.In, 42 + (ulong)i);
            _weights.Add((weight, buffer));
            if (Repacked && !EdgeLM.Kernels.Quantized.WeightRepacker.Attach(weight))
                throw new InvalidOperationException($"{c} cannot be repacked");
        }
        _x = new float[(long)c.Tokens * c.In];
        WeightFactory.FillRandom(_x, 7);
        _y = new float[(long)c.Tokens * c.Out];
        _pool = new WorkerPool(Threads);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var (weight, buffer) in _weights)
        {
            EdgeLM.Kernels.Quantized.WeightRepacker.Detach(weight);
            buffer.Dispose();
        }
        _weights.Clear();
        _pool?.Dispose();
    }

    protected void Run()
    {
        var weight = _weights[_next].Weight;
        _next = (_next + 1) % _weights.Count;
        MatMul.Compute(weight, _x, _y, CurrentCase.Tokens, _pool!);
    }
}

/// <summary>Matrix-vector products (one token, the decode step): bound by how fast weights stream from memory.</summary>
public class GemvBenchmarks : MatMulBenchmarkBase
{
    public static IEnumerable<MatMulCase> Cases => MatMulCase.Gemv();

    [ParamsSource(nameof(Cases))]
    public MatMulCase Case { get; set; } = MatMulCase.Gemv().First();

    public override MatMulCase CurrentCase => Case;

    [Benchmark]
    public void Gemv() => Run();
}

/// <summary>Matrix-matrix products (a batch of prompt tokens): bound by arithmetic once weights are reused.</summary>
public class GemmBenchmarks : MatMulBenchmarkBase
{
    public static IEnumerable<MatMulCase> Cases => MatMulCase.Gemm();

    [ParamsSource(nameof(Cases))]
    public MatMulCase Case { get; set; } = MatMulCase.Gemm().First();

    public override MatMulCase CurrentCase => Case;

    [Benchmark]
    public void Gemm() => Run();
}

/// <summary>
/// GEMV on repacked 8-row panels, what sessions decode with: GB/s per type (Q4_0/Q5_0/Q8_0 on every Qwen2.5-0.5B
/// shape, Q4_K/Q6_K on ffn_down, the only one whose rows are whole super-blocks); compare with <see cref="GemvBenchmarks"/>.
/// </summary>
public class PackedGemvBenchmarks : MatMulBenchmarkBase
{
    public static IEnumerable<MatMulCase> Cases => MatMulCase.Gemv().Where(c => MatMulCase.Repackable(c.Type));

    [ParamsSource(nameof(Cases))]
    public MatMulCase Case { get; set; } = MatMulCase.Gemv().First(c => MatMulCase.Repackable(c.Type));

    public override MatMulCase CurrentCase => Case;
    protected override bool Repacked => true;

    [Benchmark]
    public void PackedGemv() => Run();
}

/// <summary>GEMM on repacked 8-row panels (8 rows x 4 tokens register tiles); compare with <see cref="GemmBenchmarks"/>.</summary>
public class PackedGemmBenchmarks : MatMulBenchmarkBase
{
    public static IEnumerable<MatMulCase> Cases => MatMulCase.Gemm().Where(c => MatMulCase.Repackable(c.Type));

    [ParamsSource(nameof(Cases))]
    public MatMulCase Case { get; set; } = MatMulCase.Gemm().First(c => MatMulCase.Repackable(c.Type));

    public override MatMulCase CurrentCase => Case;
    protected override bool Repacked => true;

    [Benchmark]
    public void PackedGemm() => Run();
}

/// <summary>
/// Float-weight GEMM at a full pp512 batch on the packed panels sessions use (FloatPanelKernels' outer-product tile),
/// where the FFN shapes spend prompt processing time (GOP/s column; compare with 2 FMA x 8 lanes x 2 x clock per
/// core). The file-layout dot-product tile is in the Gemm cases.
/// </summary>
public class FloatPrefillBenchmarks : MatMulBenchmarkBase
{
    protected override bool Repacked => true;

    public static IEnumerable<MatMulCase> Cases => MatMulCase.FloatPrefill();

    [ParamsSource(nameof(Cases))]
    public MatMulCase Case { get; set; } = MatMulCase.FloatPrefill().First();

    public override MatMulCase CurrentCase => Case;

    [Benchmark]
    public void Prefill() => Run();
}

/// <summary>K-quant GEMV on the Qwen-1.8B / 7B shapes whose rows are whole 256-value super-blocks.</summary>
public class KQuantGemvBenchmarks : MatMulBenchmarkBase
{
    public static IEnumerable<MatMulCase> Cases => MatMulCase.KQuantGemv();

    [ParamsSource(nameof(Cases))]
    public MatMulCase Case { get; set; } = MatMulCase.KQuantGemv().First();

    public override MatMulCase CurrentCase => Case;

    [Benchmark]
    public void Gemv() => Run();
}

/// <summary>K-quant GEMM (64 prompt tokens) on the Qwen-1.8B shapes.</summary>
public class KQuantGemmBenchmarks : MatMulBenchmarkBase
{
    public static IEnumerable<MatMulCase> Cases => MatMulCase.KQuantGemm();

    [ParamsSource(nameof(Cases))]
    public MatMulCase Case { get; set; } = MatMulCase.KQuantGemm().First();

    public override MatMulCase CurrentCase => Case;

    [Benchmark]
    public void Gemm() => Run();
}
