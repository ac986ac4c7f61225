using System.Runtime.ExceptionServices;

namespace EdgeLM.Kernels;

/// <summary>
/// Work split by <see cref="WorkerPool"/>. Items [begin, end) are handed out in chunks to whichever thread is free,
/// so a job must give the same results however its items are chunked (each item computed by one thread, in a
/// fixed order) — that is what keeps outputs bitwise identical for any thread count.
/// </summary>
public interface IRangeJob
{
    /// <param name="worker">0 for the calling thread, 1..ThreadCount-1 for pool threads (index of per-thread scratch).</param>
    void Execute(int begin, int end, int worker);
}

/// <summary>
/// A persistent pool: ThreadCount-1 background threads plus the calling thread. Between jobs the threads spin
/// briefly (decode issues jobs microseconds apart) and then sleep on an event. <see cref="Run"/> allocates nothing:
/// jobs are caller-owned objects reused across calls. Not reentrant: one <see cref="Run"/> at a time.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    private const int SpinIterations = 40;

    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim _wake = new(false, 0);
    private readonly ManualResetEventSlim _done = new(false, 0);

    private IRangeJob? _job;
    private int _count;
    private int _grain;
    private int _next;
    private int _pending;
    private int _generation;
    private volatile bool _stopping;
    private Exception? _error;

    public int ThreadCount { get; }

    internal MatMul.Job MatMulJob { get; } = new();

    /// <summary>When set, <see cref="WaitTicks"/> accumulates the caller's time at the barrier (session profiling).</summary>
    internal bool Profiling;
    internal long WaitTicks;

    public WorkerPool(int threadCount = 0)
    {
        if (threadCount == 0) threadCount = Environment.ProcessorCount;
        if (threadCount is < 1 or > 1024) throw new ArgumentOutOfRangeException(nameof(threadCount), $"thread count {threadCount} is not in 1..1024");
        ThreadCount = threadCount;
        _threads = new Thread[threadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"EdgeLM worker {worker}" };
            _threads[i].Start();
        }
    }

    /// <summary>Runs job over items [0, count) in chunks of <paramref name="grain"/> items; returns when all are done.</summary>
    public void Run(IRangeJob job, int count, int grain = 1)
    {
        ArgumentNullException.ThrowIfNull(job);
        ObjectDisposedException.ThrowIf(_stopping, this);
        if (count <= 0) return;
        grain = Math.Max(1, grain);
        if (_threads.Length == 0 || count <= grain)
        {
            job.Execute(0, count, 0);
            return;
        }
        _job = job;
        _count = count;
        _grain = grain;
        _next = 0;
        _error = null;
        _pending = _threads.Length;
        _done.Reset();
        Interlocked.Increment(ref _generation); // full fence: publishes the fields above before any worker starts
        _wake.Set();

        RunChunks(0);

        long waitStart = Profiling ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        var spinner = new SpinWait();
        while (Volatile.Read(ref _pending) != 0)
        {
            if (spinner.Count < SpinIterations) spinner.SpinOnce(sleep1Threshold: -1);
            else { _done.Wait(); break; }
        }
        if (Profiling) WaitTicks += System.Diagnostics.Stopwatch.GetTimestamp() - waitStart;
        // Every worker has finished this generation, so none can miss the next Set.
        _wake.Reset();
        _job = null;
        if (_error is { } error) ExceptionDispatchInfo.Throw(error);
    }

    /// <summary>A chunk size giving each thread several chunks (load balance when cores are shared).</summary>
    public int GrainFor(int count, int chunksPerThread = 4) => Math.Max(1, count / (ThreadCount * chunksPerThread));

    private void RunChunks(int worker)
    {
        var job = _job!;
        int count = _count, grain = _grain;
        try
        {
            while (true)
            {
                int begin = Interlocked.Add(ref _next, grain) - grain;
                if (begin >= count) break;
                job.Execute(begin, Math.Min(count, begin + grain), worker);
            }
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _error, e, null);
            Volatile.Write(ref _next, count);
        }
    }

    private void WorkerLoop(int worker)
    {
        int seen = 0;
        while (true)
        {
            var spinner = new SpinWait();
            int generation;
            while ((generation = Volatile.Read(ref _generation)) == seen)
            {
                if (spinner.Count < SpinIterations) spinner.SpinOnce(sleep1Threshold: -1);
                else _wake.Wait();
            }
            seen = generation;
            if (_stopping) return;
            RunChunks(worker);
            if (Interlocked.Decrement(ref _pending) == 0) _done.Set();
        }
    }

    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        Interlocked.Increment(ref _generation);
        _wake.Set();
        foreach (var t in _threads) t.Join();
        MatMulJob.Dispose();
        _wake.Dispose();
        _done.Dispose();
    }
}
