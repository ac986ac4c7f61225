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
/// A persistent pool: ThreadCount-1 background threads plus the calling thread. Between jobs the threads spin for a
/// bounded time (decode issues ~100 jobs per token microseconds apart; the spin yields, so it is polite to other
/// processes) and then sleep on a monitor. <see cref="Run"/> waits for the job's items to be done, not for every
/// worker to wake: a worker that wakes late (descheduled on a busy machine) finds nothing left and costs the caller
/// nothing. <see cref="Run"/> allocates nothing: jobs are caller-owned objects reused across calls. Not reentrant:
/// one <see cref="Run"/> at a time.
/// </summary>
public sealed class WorkerPool : IDisposable
{
    // How long a thread polls before sleeping: covers the gaps inside a token and between tokens of a decode loop.
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 1000; // 1 ms

    private readonly Thread[] _threads;
    private readonly object _gate = new();
    private readonly ManualResetEventSlim _done = new(false, 0);

    private IRangeJob? _job;
    private int _count;
    private int _grain;
    // RunGuided: chunks shrink as the job drains; items [0, _firstPhase) all complete before any later item starts.
    private bool _guided;
    private int _firstPhase;
    // One word per job: generation (20 bits) | item count (22 bits) | next unclaimed item (22 bits). A claim is a
    // compare-exchange on it, and the count it checks against comes from the same word, so a worker holding a stale
    // view (the generation of one job, the _count of the next) can never claim past its own job's end: it once did,
    // ran items twice and over-counted completions.
    private long _claim;
    private const int ItemBits = 22;
    private const long ItemMask = (1L << ItemBits) - 1;
    private const long GenerationMask = (1L << (64 - 2 * ItemBits)) - 1;
    internal const int MaxItems = (int)ItemMask;

    private static long Pack(int generation, int count, int next) =>
        ((generation & GenerationMask) << (2 * ItemBits)) | ((long)count << ItemBits) | (uint)next;

    /// <summary>Whether a claim word belongs to this generation. The shift is unsigned: from generation 2^19 on the
    /// word's top bit is set, and an arithmetic shift made every claim look foreign, so every job hung.</summary>
    private static bool SameGeneration(long claim, int generation) => (claim >>> (2 * ItemBits)) == (generation & GenerationMask);
    private int _completed;
    private int _generation;
    private int _sleeping;
    private volatile bool _stopping;
    private Exception? _error;

    public int ThreadCount { get; }

    /// <summary>Tests: makes the next job's generation <paramref name="generation"/> + 1 (the claim word's generation
    /// field wraps after 2^20 jobs, a few thousand decoded tokens).</summary>
    internal void SetGenerationForTests(int generation) => Volatile.Write(ref _generation, generation);

    internal MatMul.Job MatMulJob { get; } = new();

    /// <summary>When set, <see cref="WaitTicks"/> accumulates the caller's time at the barrier (session profiling).</summary>
    internal bool Profiling;
    internal long WaitTicks;
    /// <summary>When profiling: the caller's time in the first phase of <see cref="RunGuided"/> jobs, its share of the
    /// items and its wait for the other threads' (a matmul's input preparation).</summary>
    internal long FirstPhaseTicks;

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
    public void Run(IRangeJob job, int count, int grain = 1) => Start(job, count, Math.Max(1, grain), guided: false, firstPhase: 0);

    /// <summary>
    /// Runs job over items [0, count) in chunks that shrink as the job drains: each claim takes
    /// max(<paramref name="minGrain"/>, remaining / (2 * ThreadCount)) items, so the threads finish within about one
    /// small chunk of each other (fixed chunks leave the last one's whole length as a wait at the barrier) while the
    /// number of claims stays logarithmic. With <paramref name="firstPhase"/> &gt; 0, items [0, firstPhase) are
    /// claimed one phase at a time (chunks from 1 item up, never straddling the phase end) and all of them complete
    /// before any item of [firstPhase, count) starts: a job can prepare a shared input in parallel and then use it,
    /// with one dispatch instead of two. No chunk straddles the phase end.
    /// </summary>
    public void RunGuided(IRangeJob job, int count, int minGrain = 1, int firstPhase = 0)
    {
        if ((uint)firstPhase > (uint)Math.Max(0, count))
            throw new ArgumentOutOfRangeException(nameof(firstPhase), $"first phase of {firstPhase} items in a job of {count}");
        Start(job, count, Math.Max(1, minGrain), guided: true, firstPhase);
    }

    private void Start(IRangeJob job, int count, int grain, bool guided, int firstPhase)
    {
        ArgumentNullException.ThrowIfNull(job);
        ObjectDisposedException.ThrowIf(_stopping, this);
        if (count <= 0) return;
        if (count > MaxItems) throw new ArgumentOutOfRangeException(nameof(count), $"a pool job has at most {MaxItems} items, got {count}");
        long start = Profiling ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        if (_threads.Length == 0 || count <= grain)
        {
            if (firstPhase > 0)
            {
                job.Execute(0, firstPhase, 0);
                if (Profiling) FirstPhaseTicks += System.Diagnostics.Stopwatch.GetTimestamp() - start;
            }
            if (firstPhase < count) job.Execute(firstPhase, count, 0);
            return;
        }
        _job = job;
        _count = count;
        _grain = grain;
        _guided = guided;
        _firstPhase = firstPhase;
        _error = null;
        _completed = 0;
        _done.Reset();
        int generation = _generation + 1;
        Volatile.Write(ref _claim, Pack(generation, count, 0));
        Interlocked.Exchange(ref _generation, generation); // full fence: publishes the fields above before any worker reads them
        if (Volatile.Read(ref _sleeping) != 0) lock (_gate) Monitor.PulseAll(_gate);

        long passedBarrier = RunChunks(job, generation, grain, guided, firstPhase, 0);
        if (Profiling && firstPhase > 0) FirstPhaseTicks += (passedBarrier != 0 ? passedBarrier : System.Diagnostics.Stopwatch.GetTimestamp()) - start;

        long waitStart = System.Diagnostics.Stopwatch.GetTimestamp();
        var spinner = new SpinWait();
        while (Volatile.Read(ref _completed) != count)
        {
            if (System.Diagnostics.Stopwatch.GetTimestamp() - waitStart < SpinTicks) spinner.SpinOnce(sleep1Threshold: -1);
            // The event is only a hint: the last worker of the previous job may Set it after this job's Reset, so
            // waking up proves nothing and the loop re-reads the count (leaving early let the next matmul reuse
            // buffers under a still-running worker).
            else _done.Wait();
        }
        if (Profiling) WaitTicks += System.Diagnostics.Stopwatch.GetTimestamp() - waitStart;
        _job = null;
        if (_error is { } error) ExceptionDispatchInfo.Throw(error);
    }

    /// <summary>A chunk size giving each thread several chunks (load balance when cores are shared).</summary>
    public int GrainFor(int count, int chunksPerThread = 4) => Math.Max(1, count / (ThreadCount * chunksPerThread));

    /// <summary>Claims and runs chunks until the job has none left; returns when this thread passed the first-phase
    /// barrier (a timestamp), or 0.</summary>
    private long RunChunks(IRangeJob job, int generation, int grain, bool guided, int firstPhase, int worker)
    {
        bool pastBarrier = firstPhase == 0;
        long passedAt = 0;
        while (true)
        {
            long claim = Volatile.Read(ref _claim);
            if (!SameGeneration(claim, generation)) return passedAt;
            int jobCount = (int)((claim >> ItemBits) & ItemMask), begin = (int)(claim & ItemMask);
            if (begin >= jobCount) return passedAt;
            bool inFirstPhase = begin < firstPhase;
            int limit = inFirstPhase ? firstPhase : jobCount;
            int take = !guided ? grain : Math.Max(inFirstPhase ? 1 : grain, (limit - begin) / (2 * ThreadCount));
            int end = Math.Min(limit, begin + take);
            if (Interlocked.CompareExchange(ref _claim, claim + (end - begin), claim) != claim) continue;
            if (!pastBarrier && !inFirstPhase)
            {
                // Every first-phase item has been claimed (claims go in item order) and only first-phase items can
                // complete before this barrier is passed, so the count tells when they are all done.
                var spinner = new SpinWait();
                while (Volatile.Read(ref _completed) < firstPhase) spinner.SpinOnce(sleep1Threshold: -1);
                pastBarrier = true;
                passedAt = System.Diagnostics.Stopwatch.GetTimestamp();
            }
            try
            {
                job.Execute(begin, end, worker);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _error, e, null);
                Complete(CancelUnclaimed(generation));
            }
            finally
            {
                Complete(end - begin);
            }
        }
    }

    /// <summary>Stops further claims after an error; returns how many items were never claimed (now counted as done).</summary>
    private int CancelUnclaimed(int generation)
    {
        while (true)
        {
            long claim = Volatile.Read(ref _claim);
            if (!SameGeneration(claim, generation)) return 0;
            int count = (int)((claim >> ItemBits) & ItemMask), next = (int)(claim & ItemMask);
            if (next >= count) return 0;
            if (Interlocked.CompareExchange(ref _claim, Pack(generation, count, count), claim) == claim) return count - next;
        }
    }

    private void Complete(int items)
    {
        if (items != 0 && Interlocked.Add(ref _completed, items) == _count) _done.Set();
    }

    private void WorkerLoop(int worker)
    {
        int seen = 0;
        while (true)
        {
            int generation = Volatile.Read(ref _generation);
            if (generation == seen)
            {
                long spinStart = System.Diagnostics.Stopwatch.GetTimestamp();
                var spinner = new SpinWait();
                while ((generation = Volatile.Read(ref _generation)) == seen
                    && System.Diagnostics.Stopwatch.GetTimestamp() - spinStart < SpinTicks)
                    spinner.SpinOnce(sleep1Threshold: -1);
                if (generation == seen)
                {
                    lock (_gate)
                    {
                        Interlocked.Increment(ref _sleeping); // full fence before re-reading the generation
                        while ((generation = Volatile.Read(ref _generation)) == seen) Monitor.Wait(_gate);
                        Interlocked.Decrement(ref _sleeping);
                    }
                }
            }
            seen = generation;
            if (_stopping) return;
            // The job fields are read after the generation and may already belong to a later job: claims check the
            // generation and the item count held in the claim word itself, so stale fields can never take an item.
            var job = _job;
            int grain = _grain, firstPhase = _firstPhase;
            bool guided = _guided;
            if (job is not null) RunChunks(job, generation, grain, guided, firstPhase, worker);
        }
    }

    public void Dispose()
    {
        if (_stopping) return;
        _stopping = true;
        Interlocked.Increment(ref _generation);
        lock (_gate) Monitor.PulseAll(_gate);
        foreach (var t in _threads) t.Join();
        MatMulJob.Dispose();
        _done.Dispose();
    }
}
