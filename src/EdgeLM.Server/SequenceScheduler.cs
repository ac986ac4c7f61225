using EdgeLM.Inference;
using EdgeLM.Kernels;
using EdgeLM.Models;
using EdgeLM.Tokenization;

namespace EdgeLM.Serving;

/// <summary>
/// How the scheduler advances its active sequences by one token each. The engine has no batched decode yet (one
/// matmul for all sequences), so <see cref="InterleavedStepper"/> runs them one after another; a batched stepper can
/// replace it without touching the scheduler.
/// </summary>
public interface ISequenceStepper
{
    /// <summary>Shown in /metrics and the start-up line: "interleaved" or "batched".</summary>
    string Mode { get; }
    void Prefill(GenerationSequence sequence);
    /// <summary>One decode step for every sequence in <paramref name="sequences"/> (none of them finished).</summary>
    void Step(IReadOnlyList<GenerationSequence> sequences);
}

public sealed class InterleavedStepper : ISequenceStepper
{
    public string Mode => "interleaved";
    public void Prefill(GenerationSequence sequence) => sequence.Prefill();
    public void Step(IReadOnlyList<GenerationSequence> sequences)
    {
        foreach (var s in sequences) s.Step();
    }
}

/// <summary>The queue is at its limit: the caller answers 429.</summary>
public sealed class QueueFullException(string message) : Exception(message);

/// <summary>
/// Runs up to <c>parallel</c> generations at once, each on its own pooled <see cref="InferenceSession"/> (own KV
/// cache), all on one shared <see cref="WorkerPool"/>. One scheduler thread owns every session: it admits waiting
/// requests (prefill), then gives each active sequence one decode step per round, round-robin, so sessions sharing
/// the pool never run at the same time. A cancelled request leaves at its next step and its session goes back to
/// the pool.
/// </summary>
public sealed class SequenceScheduler : IDisposable
{
    private sealed class Work(int[] prompt, GenerationOptions options, Action<string> onText, CancellationToken cancel)
    {
        public readonly int[] Prompt = prompt;
        public readonly GenerationOptions Options = options;
        public readonly Action<string> OnText = onText;
        public readonly CancellationToken Cancel = cancel;
        public readonly TaskCompletionSource<GenerationResult> Completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public GenerationSequence? Sequence;
        public InferenceSession? Session;
    }

    private readonly LoadedModel _model;
    private readonly BpeTokenizer _tokenizer;
    private readonly ISequenceStepper _stepper;
    private readonly WorkerPool _pool;
    private readonly object _gate = new();
    private readonly Queue<Work> _waiting = new();
    private readonly List<Work> _active = [];
    private readonly Stack<InferenceSession> _idleSessions = new();
    private readonly List<InferenceSession> _allSessions = [];
    private readonly Thread _thread;
    private volatile bool _stopping;
    private int _activeCount;

    private long _promptTokens, _generatedTokens, _prefillTicks, _decodeTicks, _completed, _cancelled;

    public SequenceScheduler(LoadedModel model, BpeTokenizer tokenizer, int parallel, int contextLength, int threads,
        int maxQueue, ISequenceStepper? stepper = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (parallel < 1) throw new ArgumentException($"the number of parallel sequences must be at least 1, got {parallel}");
        if (maxQueue < 0) throw new ArgumentException($"the queue limit cannot be negative, got {maxQueue}");
        if (contextLength < 1 || contextLength > model.Config.ContextLength)
            throw new ArgumentException($"the context length must be between 1 and the model's {model.Config.ContextLength}, got {contextLength}");
        _model = model;
        _tokenizer = tokenizer;
        Parallel = parallel;
        ContextLength = contextLength;
        MaxQueue = maxQueue;
        _stepper = stepper ?? new InterleavedStepper();
        _pool = new WorkerPool(threads);
        _thread = new Thread(RunLoop) { IsBackground = true, Name = "edgelm-scheduler" };
        _thread.Start();
    }

    public int Parallel { get; }
    public int ContextLength { get; }
    public int MaxQueue { get; }
    public string BatchingMode => _stepper.Mode;
    public int ThreadCount => _pool.ThreadCount;
    public int ActiveCount => Volatile.Read(ref _activeCount);
    public int QueueLength { get { lock (_gate) return _waiting.Count; } }
    /// <summary>Sessions allocated so far (at most <see cref="Parallel"/>: they are reused, not reallocated).</summary>
    public int SessionCount { get { lock (_gate) return _allSessions.Count; } }
    public long PromptTokensTotal => Interlocked.Read(ref _promptTokens);
    public long GeneratedTokensTotal => Interlocked.Read(ref _generatedTokens);
    public TimeSpan PrefillTimeTotal => TimeSpan.FromTicks(Interlocked.Read(ref _prefillTicks));
    public TimeSpan DecodeTimeTotal => TimeSpan.FromTicks(Interlocked.Read(ref _decodeTicks));
    public long CompletedTotal => Interlocked.Read(ref _completed);
    public long CancelledTotal => Interlocked.Read(ref _cancelled);

    /// <summary>
    /// Queues a generation. <paramref name="onText"/> runs on the scheduler thread and must not block. The task ends
    /// with the result (FinishReason.Cancelled when <paramref name="cancel"/> fired), or faults with the
    /// ArgumentException that rejected the request. Throws <see cref="QueueFullException"/> when the queue is full.
    /// </summary>
    public Task<GenerationResult> SubmitAsync(int[] prompt, GenerationOptions options, Action<string> onText, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(onText);
        if (prompt.Length == 0) throw new ArgumentException("the prompt is empty");
        if (prompt.Length > ContextLength)
            throw new ArgumentException($"prompt of {prompt.Length} tokens exceeds the context of {ContextLength} tokens");
        options.Sampling.Validate();
        var work = new Work(prompt, options, onText, cancel);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            // Requests that can start at once never count against the queue limit.
            int freeSlots = Parallel - _activeCount;
            if (_waiting.Count - freeSlots >= MaxQueue)
                throw new QueueFullException($"too many requests waiting ({_waiting.Count}); try again later");
            _waiting.Enqueue(work);
            Monitor.Pulse(_gate);
        }
        return work.Completion.Task;
    }

    private void RunLoop()
    {
        var stepping = new List<GenerationSequence>();
        while (true)
        {
            Admit();
            lock (_gate)
            {
                if (_stopping) break;
                if (_active.Count == 0)
                {
                    if (_waiting.Count == 0) Monitor.Wait(_gate);
                    continue;
                }
            }
            stepping.Clear();
            foreach (var w in _active) stepping.Add(w.Sequence!);
            try
            {
                _stepper.Step(stepping);
            }
            catch (Exception e)
            {
                // A failed step leaves the sessions in an unknown state: every active request fails, the sessions are
                // reset on their next use, and the server keeps serving.
                foreach (var w in _active) Release(w, e);
                _active.Clear();
                Volatile.Write(ref _activeCount, 0);
                continue;
            }
            for (int i = _active.Count - 1; i >= 0; i--)
            {
                if (!_active[i].Sequence!.IsFinished) continue;
                Release(_active[i], null);
                _active.RemoveAt(i);
            }
            Volatile.Write(ref _activeCount, _active.Count);
        }
        lock (_gate)
        {
            foreach (var w in _active) Release(w, new ObjectDisposedException(nameof(SequenceScheduler)));
            _active.Clear();
            while (_waiting.TryDequeue(out var w)) w.Completion.TrySetException(new ObjectDisposedException(nameof(SequenceScheduler)));
        }
    }

    private void Admit()
    {
        while (true)
        {
            Work work;
            InferenceSession session;
            lock (_gate)
            {
                if (_stopping || _active.Count >= Parallel || !_waiting.TryDequeue(out work!)) return;
                if (work.Cancel.IsCancellationRequested)
                {
                    Interlocked.Increment(ref _cancelled);
                    work.Completion.TrySetCanceled(work.Cancel);
                    continue;
                }
                session = RentSession();
            }
            work.Session = session;
            try
            {
                session.Reset();
                work.Sequence = new GenerationSequence(session, _tokenizer, work.Prompt, work.Options, work.OnText, work.Cancel);
                _stepper.Prefill(work.Sequence);
            }
            catch (Exception e)
            {
                Release(work, e);
                continue;
            }
            if (work.Sequence.IsFinished) { Release(work, null); continue; }
            lock (_gate) _active.Add(work);
            Volatile.Write(ref _activeCount, _active.Count);
        }
    }

    private InferenceSession RentSession()
    {
        if (_idleSessions.TryPop(out var s)) return s;
        s = new InferenceSession(_model.Config, _model.Weights, ContextLength, _pool);
        _allSessions.Add(s);
        return s;
    }

    private void Release(Work work, Exception? error)
    {
        if (work.Session != null)
        {
            lock (_gate) _idleSessions.Push(work.Session);
            work.Session = null;
        }
        var result = work.Sequence?.Result;
        work.Sequence = null; // the sequence holds per-request buffers; drop them now, not when the caller lets go
        if (error != null || result == null)
        {
            work.Completion.TrySetException(error ?? new InvalidOperationException("the sequence ended without a result"));
            return;
        }
        Interlocked.Add(ref _promptTokens, result.PromptTokens);
        Interlocked.Add(ref _generatedTokens, result.GeneratedTokens);
        Interlocked.Add(ref _prefillTicks, result.PrefillTime.Ticks);
        Interlocked.Add(ref _decodeTicks, result.DecodeTime.Ticks);
        Interlocked.Increment(ref result.Finish == FinishReason.Cancelled ? ref _cancelled : ref _completed);
        work.Completion.TrySetResult(result);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_stopping) return;
            _stopping = true;
            Monitor.PulseAll(_gate);
        }
        _thread.Join();
        foreach (var s in _allSessions) s.Dispose();
        _pool.Dispose();
    }
}
