using EdgeLM.Kernels;
using EdgeLM.Kernels.Quantized;
using EdgeLM.Tensors;
using EdgeLM.Tensors.Quantization;

namespace EdgeLM.Tests.Kernels;

/// <summary>
/// The matmul job's fused steps (input norm and quantization in its first phase, bias / residual / SwiGlu
/// epilogues) against the same steps done one after the other: bitwise equal for every thread count, row count
/// (decode's pieces and prefill's rows, token chunks) and weight path (float, integer tiles, panels, k-panels).
/// </summary>
[Trait("Category", "Kernels")]
public unsafe class FusedMatMulJobTests
{
    private const float Eps = 1e-6f;

    /// <summary>A weight with its packed panels attached when <paramref name="packed"/> (detached on dispose).</summary>
    private sealed class Weight : IDisposable
    {
        private readonly NativeBuffer _buffer;
        public Tensor Tensor { get; }

        public Weight(GgmlType type, int inDim, int outDim, int seed, bool packed)
        {
            var random = new Random(seed);
            var values = new float[inDim * outDim];
            for (int i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1);
            byte[] bytes = type == GgmlType.F16
                ? values.SelectMany(v => BitConverter.GetBytes((Half)v)).ToArray()
                : Quantize.Rows(type, values, inDim);
            _buffer = new NativeBuffer(bytes.Length);
            bytes.CopyTo(_buffer.Span);
            Tensor = new Tensor($"w{seed}", type, [inDim, outDim], _buffer.Pointer, bytes.Length);
            if (packed) Assert.True(WeightRepacker.Attach(Tensor), $"{type} [{inDim}, {outDim}] should pack");
        }

        public void Dispose()
        {
            WeightRepacker.Detach(Tensor);
            _buffer.Dispose();
        }
    }

    private static float[] RandomFloats(int count, int seed, float scale = 1)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
    }

    // Input widths: 800 = three 256-value pieces and a partial one (decode splits it); 768 for Q8_K (whole blocks).
    public static TheoryData<GgmlType, int, int, bool> Weights => new()
    {
        { GgmlType.Q8_0, 800, 200, true },   // panels (Q8_0 activations + side data)
        { GgmlType.Q4_0, 800, 203, false },  // integer tiles in the file layout; 203 rows: a partial unit
        { GgmlType.Q6_K, 768, 96, true },    // k-panels (Q8_K activations)
        { GgmlType.Q4_K, 768, 45, false },   // k-quant tiles in the file layout
        { GgmlType.F16, 800, 203, false },   // float path (decode kernel at n = 1, prefill tiles otherwise)
    };

    private static readonly int[] RowCounts = [1, 3, 4, 70];
    private static readonly int[] ThreadCounts = [1, 2, 3];

    [Theory]
    [MemberData(nameof(Weights))]
    public void NormalizedInputAndBiasMatchSeparateSteps(GgmlType type, int k, int outDim, bool packed)
    {
        using var w = new Weight(type, k, outDim, 1, packed);
        float[] norm = RandomFloats(k, 2), bias = RandomFloats(outDim, 3);
        foreach (int n in RowCounts)
        {
            float[] source = RandomFloats(n * k, 10 + n, 4);
            float[] normalized = new float[n * k];
            for (int t = 0; t < n; t++) RmsNorm.Apply(source.AsSpan(t * k, k), norm, normalized.AsSpan(t * k, k), Eps);
            foreach (int threads in ThreadCounts)
            {
                using var pool = new WorkerPool(threads);
                float[] expected = new float[n * outDim];
                MatMul.Compute(w.Tensor, normalized, expected, n, pool);
                for (int t = 0; t < n; t++) Elementwise.Add(expected.AsSpan(t * outDim, outDim), bias);

                float[] input = new float[n * k], actual = new float[n * outDim];
                fixed (float* pSource = source, pNorm = norm, pBias = bias, pInput = input, pActual = actual)
                {
                    var job = pool.MatMulJob;
                    job.Begin(pInput, n, k);
                    job.NormalizeInput(pSource, pNorm, Eps);
                    job.Add(w.Tensor, pActual, outDim, pBias);
                    job.Run(pool);
                }
                Assert.Equal(normalized, input);
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"{type} n {n} threads {threads}: first difference at {expected.AsSpan().CommonPrefixLength(actual)}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Weights))]
    public void SwiGluPairMatchesSeparateSteps(GgmlType type, int k, int outDim, bool packed)
    {
        using var gate = new Weight(type, k, outDim, 4, packed);
        using var up = new Weight(type, k, outDim, 5, packed);
        foreach (int n in RowCounts)
        {
            // Large enough that silu's exponential sees both signs and saturated values.
            float[] x = RandomFloats(n * k, 20 + n, 2);
            foreach (int threads in ThreadCounts)
            {
                using var pool = new WorkerPool(threads);
                float[] expectedGate = new float[n * outDim], expectedUp = new float[n * outDim];
                MatMul.Compute(gate.Tensor, x, expectedGate, n, pool);
                MatMul.Compute(up.Tensor, x, expectedUp, n, pool);
                for (int t = 0; t < n; t++) SwiGlu.Apply(expectedGate.AsSpan(t * outDim, outDim), expectedUp.AsSpan(t * outDim, outDim));

                float[] actualGate = new float[n * outDim], actualUp = new float[n * outDim];
                fixed (float* px = x, pg = actualGate, pu = actualUp)
                {
                    var job = pool.MatMulJob;
                    job.Begin(px, n, k);
                    job.Add(gate.Tensor, pg, outDim);
                    job.Add(up.Tensor, pu, outDim);
                    job.ApplySwiGlu();
                    job.Run(pool);
                }
                Assert.Equal(expectedUp, actualUp);
                Assert.True(expectedGate.AsSpan().SequenceEqual(actualGate), $"{type} n {n} threads {threads}: first difference at {expectedGate.AsSpan().CommonPrefixLength(actualGate)}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Weights))]
    public void ResidualAddMatchesSeparateSteps(GgmlType type, int k, int outDim, bool packed)
    {
        using var w = new Weight(type, k, outDim, 6, packed);
        foreach (int n in RowCounts)
        {
            float[] x = RandomFloats(n * k, 30 + n), residual = RandomFloats(n * outDim, 40 + n);
            foreach (int threads in ThreadCounts)
            {
                using var pool = new WorkerPool(threads);
                float[] product = new float[n * outDim];
                MatMul.Compute(w.Tensor, x, product, n, pool);
                float[] expected = (float[])residual.Clone();
                Elementwise.Add(expected, product);

                float[] actual = (float[])residual.Clone(), scratch = new float[n * outDim];
                fixed (float* px = x, pActual = actual, pScratch = scratch)
                {
                    var job = pool.MatMulJob;
                    job.Begin(px, n, k);
                    job.Add(w.Tensor, pScratch, outDim);
                    job.AddInto(pActual);
                    job.Run(pool);
                }
                Assert.Equal(product, scratch);
                Assert.Equal(expected, actual);
            }
        }
    }

    /// <summary>Decode quantizes its row in pieces split between threads; prefill whole rows: same bits per row.</summary>
    [Theory]
    [MemberData(nameof(Weights))]
    public void DecodeRowEqualsTheSameRowInsideABatch(GgmlType type, int k, int outDim, bool packed)
    {
        using var w = new Weight(type, k, outDim, 7, packed);
        const int n = 70;
        float[] x = RandomFloats(n * k, 8);
        using var pool = new WorkerPool(2);
        float[] batch = new float[n * outDim], single = new float[outDim];
        MatMul.Compute(w.Tensor, x, batch, n, pool);
        foreach (int t in new[] { 0, 5, n - 1 })
        {
            MatMul.Compute(w.Tensor, x.AsSpan(t * k, k), single, 1, pool);
            Assert.Equal(batch.AsSpan(t * outDim, outDim).ToArray(), single);
        }
    }

    [Fact]
    public void MisusedEpiloguesAreRejected()
    {
        using var a = new Weight(GgmlType.Q8_0, 64, 16, 1, false);
        using var b = new Weight(GgmlType.Q8_0, 64, 24, 2, false);
        using var pool = new WorkerPool(1);
        var job = pool.MatMulJob;
        using var y = new NativeBuffer(64 * sizeof(float));
        float* p = (float*)y.Pointer;
        job.Begin(p, 1, 64);
        job.Add(a.Tensor, p, 16);
        job.Add(b.Tensor, p, 24);
        Assert.Throws<InvalidOperationException>(() => job.ApplySwiGlu()); // different heights
        nint address = (nint)p;
        Assert.Throws<InvalidOperationException>(() => job.AddInto((float*)address)); // two weights
    }
}

[Trait("Category", "Kernels")]
public class GuidedPoolTests
{
    /// <summary>Counts each item's runs; second-phase items check that every first-phase item had finished.</summary>
    private sealed class PhasedJob(int count, int firstPhase) : IRangeJob
    {
        public readonly int[] Hits = new int[count];
        public int FirstPhaseDone;
        public int OrderViolations;
        public int Straddles;

        public void Execute(int begin, int end, int worker)
        {
            if (begin < firstPhase && end > firstPhase) Interlocked.Increment(ref Straddles);
            for (int i = begin; i < end; i++)
            {
                if (i >= firstPhase && Volatile.Read(ref FirstPhaseDone) != firstPhase) Interlocked.Increment(ref OrderViolations);
                if (i < firstPhase && i % 3 == 0) Thread.SpinWait(2000); // uneven items
                Interlocked.Increment(ref Hits[i]);
                if (i < firstPhase) Interlocked.Increment(ref FirstPhaseDone);
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void EveryItemRunsOnceAndTheFirstPhaseCompletesFirst(int threads)
    {
        using var pool = new WorkerPool(threads);
        foreach (int count in new[] { 1, 2, 9, 100, 1000 })
            foreach (int firstPhase in new[] { 0, 1, count / 3, count })
                foreach (int minGrain in new[] { 1, 4, 2000 })
                    for (int repeat = 0; repeat < 5; repeat++)
                    {
                        var job = new PhasedJob(count, firstPhase);
                        pool.RunGuided(job, count, minGrain, firstPhase);
                        Assert.All(job.Hits, h => Assert.Equal(1, h));
                        Assert.Equal(0, job.OrderViolations);
                        Assert.Equal(0, job.Straddles);
                    }
    }

    private sealed class ThrowingJob : IRangeJob
    {
        public void Execute(int begin, int end, int worker)
        {
            if (begin <= 3 && 3 < end) throw new InvalidOperationException("item 3");
        }
    }

    [Fact]
    public void AFirstPhaseErrorReachesTheCallerWithoutHanging()
    {
        using var pool = new WorkerPool(2);
        var error = Assert.Throws<InvalidOperationException>(() => pool.RunGuided(new ThrowingJob(), 200, 1, firstPhase: 10));
        Assert.Equal("item 3", error.Message);
        var job = new PhasedJob(50, 5);
        pool.RunGuided(job, 50, 1, 5);
        Assert.All(job.Hits, h => Assert.Equal(1, h));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.RunGuided(job, 50, 1, 51));
    }
}
