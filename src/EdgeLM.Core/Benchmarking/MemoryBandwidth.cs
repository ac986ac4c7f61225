using System.Diagnostics;
using System.Runtime.Intrinsics;
using EdgeLM.Kernels;
using EdgeLM.Tensors;

namespace EdgeLM.Benchmarking;

/// <summary>
/// The memory read bandwidth the engine's own threads reach: each of N threads sums one slice of a buffer much larger
/// than the caches with vector loads, on the same worker pool the forward pass uses. Decode reads every weight once
/// per token, so this is the ceiling of decode speed: tokens/s &lt;= bandwidth / bytes read per token
/// (<see cref="DecodeTraffic"/>).
/// </summary>
/// <summary>Read bandwidth in bytes per second: the median and the best of the timed passes.</summary>
public readonly record struct ReadBandwidth(double Median, double Best);

public static unsafe class MemoryBandwidth
{
    /// <summary>Default buffer size: far beyond any L3 (32 MB on the development machine).</summary>
    public const long DefaultBytes = 512L << 20;

    /// <summary>Bytes per second of <paramref name="passes"/> timed passes (after an untimed one) over a buffer of
    /// <paramref name="bytes"/> bytes read by <paramref name="threads"/> threads: their median and their best. On a
    /// shared machine single passes (~20 ms) catch bursts far above what a run of seconds sustains, so the median is
    /// the figure to hold decode against.</summary>
    public static ReadBandwidth MeasureRead(int threads, long bytes = DefaultBytes, int passes = DefaultPasses)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 4096L * threads);
        ArgumentOutOfRangeException.ThrowIfLessThan(passes, 1);
        using var buffer = new NativeBuffer(bytes); // cleared: every page is mapped before the timing
        using var pool = new WorkerPool(threads);
        var job = new ReadJob(buffer.Pointer, bytes / threads / 128 * 128, threads);
        pool.Run(job, threads);
        var rates = new double[passes];
        for (int p = 0; p < passes; p++)
        {
            long start = Stopwatch.GetTimestamp();
            pool.Run(job, threads);
            rates[p] = job.SliceBytes * threads / Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        Array.Sort(rates);
        double median = passes % 2 == 1 ? rates[passes / 2] : (rates[passes / 2 - 1] + rates[passes / 2]) / 2;
        // The sums are used, so the reads cannot be dropped.
        return job.Checksum == ulong.MaxValue ? default : new ReadBandwidth(median, rates[^1]);
    }

    public const int DefaultPasses = 10;

    private sealed class ReadJob(byte* data, long sliceBytes, int slices) : IRangeJob
    {
        public long SliceBytes => sliceBytes;
        private readonly ulong[] _sums = new ulong[slices * 8]; // a cache line apart
        public ulong Checksum { get { ulong s = 0; for (int i = 0; i < slices; i++) s ^= _sums[i * 8]; return s; } }

        public void Execute(int begin, int end, int worker)
        {
            for (int slice = begin; slice < end; slice++) _sums[slice * 8] = Sum(data + slice * sliceBytes, sliceBytes);
        }
    }

    /// <summary>Sums 128-byte steps (a multiple of 128 bytes) in four independent vector chains.</summary>
    internal static ulong Sum(byte* p, long bytes)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<ulong> a0 = default, a1 = default, a2 = default, a3 = default;
            for (long i = 0; i < bytes; i += 128)
            {
                a0 += Vector256.Load((ulong*)(p + i)); a1 += Vector256.Load((ulong*)(p + i + 32));
                a2 += Vector256.Load((ulong*)(p + i + 64)); a3 += Vector256.Load((ulong*)(p + i + 96));
            }
            return Vector256.Sum(a0 + a1 + a2 + a3);
        }
        Vector128<ulong> b0 = default, b1 = default, b2 = default, b3 = default;
        for (long i = 0; i < bytes; i += 64)
        {
            b0 += Vector128.Load((ulong*)(p + i)); b1 += Vector128.Load((ulong*)(p + i + 16));
            b2 += Vector128.Load((ulong*)(p + i + 32)); b3 += Vector128.Load((ulong*)(p + i + 48));
        }
        return Vector128.Sum(b0 + b1 + b2 + b3);
    }
}
