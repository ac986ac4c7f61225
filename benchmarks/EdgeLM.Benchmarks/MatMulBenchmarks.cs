using BenchmarkDotNet.Attributes;
using EdgeLM.Kernels;
using EdgeLM.Tensors;

namespace EdgeLM.Benchmarks;

/// <summary>Shared setup: one weight matrix, its input and output rows, and a worker pool of the given size.</summary>
public abstract class MatMulBenchmarkBase
{
    private NativeBuffer? _buffer;
    private Tensor? _weight;
    private WorkerPool? _pool;
    private float[] _x = [], _y = [];

    public abstract MatMulCase CurrentCase { get; }

    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>Whether the weight runs on the repacked panel kernels (only Q4_0/Q5_0/Q8_0 have them).</summary>
    protected virtual bool Repacked => false;

    [GlobalSetup]
    public void Setup()
    {
        var c = CurrentCase;
        (_weight, _buffer) = WeightFactory.Create(c.Type, c.Out, c.In);
        if (Repacked && !EdgeLM.Kernels.Quantized.WeightRepacker.Attach(_weight))
            throw new InvalidOperationException($"{c} cannot be repacked");
        _x = new float[(long)c.Tokens * c.In];
        WeightFactory.FillRandom(_x, 7);
        _y = new float[(long)c.Tokens * c.Out];
        _pool = new WorkerPool(Threads);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_weight is not null) EdgeLM.Kernels.Quantized.WeightRepacker.Detach(_weight);
        _pool?.Dispose();
        _buffer?.Dispose();
    }

    protected void Run() => MatMul.Compute(_weight!, _x, _y, CurrentCase.Tokens, _pool!);
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

/// <summary>GEMV on repacked 8-row panels (what sessions use for Q4_0/Q5_0/Q8_0); compare with <see cref="GemvBenchmarks"/>.</summary>
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
/// Float-weight GEMM at a full pp512 batch: the converted-once weight panel and the k-blocked 4x3 tile, where the
/// FFN shapes spend prompt processing time (GOP/s column; compare with 2 FMA x 8 lanes x 2 x clock per core).
/// </summary>
public class FloatPrefillBenchmarks : MatMulBenchmarkBase
{
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
