using System.Diagnostics;
using EdgeLM.Inference;
using EdgeLM.Kernels;
using EdgeLM.Models;
using EdgeLM.Tokenization;

namespace EdgeLM.Serving;

/// <summary>
/// How the scheduler advances its active sequences by one step. <see cref="BatchedStepper"/> runs them all in one
/// forward pass of the shared <see cref="BatchedSession"/>; a test can wrap it (to hold steps back, say).
/// </summary>
public interface ISequenceStepper
{
    /// <summary>Shown in /metrics and the start-up line.</summary>
    string Mode { get; }
    /// <summary>
    /// One step for every sequence in <paramref name="sequences"/> (none of them finished, all on
    /// <paramref name="batch"/>): prompts not yet run are prefilled (long ones over several steps), the others decode
    /// one token. Returns the batch's rows run (tokens through the model).
    /// </summary>
    int Step(BatchedSession batch, IReadOnlyList<GenerationSequence> sequences);
}

/// <summary>
/// Continuous batching: each step queues every sequence's next input (its prompt, or its last picked token), runs
/// one batched forward pass over all of them (weights streamed once per step, not once per sequence) and lets each
/// sequence whose logits are ready pick its next token. Cancelled sequences finish before the step.
/// </summary>
public sealed class BatchedStepper : ISequenceStepper
{
    public string Mode => "batched";

    public int Step(BatchedSession batch, IReadOnlyList<GenerationSequence> sequences)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(sequences);
        foreach (var s in sequences) s.QueueNext();
        long start = Stopwatch.GetTimestamp();
        int rows = batch.Step();
        var elapsed = Stopwatch.GetElapsedTime(start);
        foreach (var s in sequences) s.AcceptStep(elapsed);
        return rows;
    }
}

/// <summary>The queue is at its limit: the caller answers 429.</summary>
public sealed class QueueFullException(string message) : Exception(message);

/// <summary>
/// Runs up to <c>parallel</c> generations at once as one continuous batch (<see cref="BatchedSession"/>): each
/// sequence has its own KV cache, every step runs all of them through the model together. One scheduler thread owns
/// the batch: between steps it admits waiting requests (their prompts run in the next steps, next to the others'
/// decode tokens) and lets finished ones leave. A cancelled request leaves at its next step and its KV cache goes
/// back to the batch for the next request.
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
        public BatchSequence? Slot;
    }

    private readonly LoadedModel _model;
    private readonly BpeTokenizer _tokenizer;
    private readonly ISequenceStepper _stepper;
    private readonly WorkerPool _pool;
    private readonly BatchedSession _batch;
    private readonly object _gate = new();
    private readonly Queue<Work> _waiting = new();
    private readonly List<Work> _active = [];
    private readonly Thread _thread;
    private volatile bool _stopping;
    private int _activeCount, _cacheCount;

    private long _promptTokens, _generatedTokens, _prefillTicks, _decodeTicks, _completed, _cancelled;
    private long _steps, _stepRows, _stepSequences;

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
        _stepper = stepper ?? new BatchedStepper();
        _pool = new WorkerPool(threads);
        try
        {
            _batch = new BatchedSession(model.Config, model.Weights, parallel, contextLength, _pool);
        }
        catch
        {
            _pool.Dispose();
            throw;
        }
        _thread = new Thread(RunLoop) { IsBackground = true, Name = "edgelm-scheduler" };
        _thread.Start();
    }

    public int Parallel { get; }
    public int ContextLength { get; }
    /// <summary>How long the scheduler waits with no request before it frees the unused KV caches.</summary>
    public TimeSpan IdleCacheRelease { get; init; } = TimeSpan.FromSeconds(30);
    public int MaxQueue { get; }
    public string BatchingMode => _stepper.Mode;
    public int ThreadCount => _pool.ThreadCount;
    public int ActiveCount => Volatile.Read(ref _activeCount);
    public int QueueLength { get { lock (_gate) return _waiting.Count; } }
    /// <summary>KV caches allocated now (at most <see cref="Parallel"/>: reused while busy, freed after <see cref="IdleCacheRelease"/> idle).</summary>
    public int SessionCount => Volatile.Read(ref _cacheCount);
    public long PromptTokensTotal => Interlocked.Read(ref _promptTokens);
    public long GeneratedTokensTotal => Interlocked.Read(ref _generatedTokens);
    public TimeSpan PrefillTimeTotal => TimeSpan.FromTicks(Interlocked.Read(ref _prefillTicks));
    public TimeSpan DecodeTimeTotal => TimeSpan.FromTicks(Interlocked.Read(ref _decodeTicks));
    public long CompletedTotal => Interlocked.Read(ref _completed);
    public long CancelledTotal => Interlocked.Read(ref _cancelled);
    /// <summary>Batched forward passes run.</summary>
    public long StepsTotal => Interlocked.Read(ref _steps);
    /// <summary>Tokens (rows) run over all steps: prompt and decode tokens together.</summary>
    public long StepTokensTotal => Interlocked.Read(ref _stepRows);
    /// <summary>Sequences summed over all steps: divided by <see cref="StepsTotal"/>, the mean batch size.</summary>
    public long StepSequencesTotal => Interlocked.Read(ref _stepSequences);

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
                    // Idle: after a quiet spell give the KV caches of a past burst back (each is ctx x layers x kv
                    // width; --parallel 8 at 32k context would otherwise keep gigabytes for nothing).
                    if (_waiting.Count == 0 && !Monitor.Wait(_gate, IdleCacheRelease) && _waiting.Count == 0 && !_stopping)
                    {
                        _batch.ReleaseIdleCaches();
                        Volatile.Write(ref _cacheCount, _batch.CacheCount);
                        if (_waiting.Count == 0 && !_stopping) Monitor.Wait(_gate);
                    }
                    continue;
                }
            }
            stepping.Clear();
            foreach (var w in _active) stepping.Add(w.Sequence!);
            try
            {
                int rows = _stepper.Step(_batch, stepping);
                if (rows > 0)
                {
                    Interlocked.Increment(ref _steps);
                    Interlocked.Add(ref _stepRows, rows);
                    Interlocked.Add(ref _stepSequences, stepping.Count);
                }
            }
            catch (Exception e)
            {
                // A failed step leaves the sequences in an unknown state: every active request fails, their caches go
                // back to the batch (a new sequence starts at position 0), and the server keeps serving.
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

    /// <summary>Moves waiting requests into the batch while it has room; their prompts run in the next step.</summary>
    private void Admit()
    {
        while (true)
        {
            Work work;
            lock (_gate)
            {
                if (_stopping || _active.Count >= Parallel || !_waiting.TryDequeue(out work!)) return;
                if (work.Cancel.IsCancellationRequested)
                {
                    Interlocked.Increment(ref _cancelled);
                    work.Completion.TrySetCanceled(work.Cancel);
                    continue;
                }
            }
            try
            {
                work.Slot = _batch.Add();
                Volatile.Write(ref _cacheCount, _batch.CacheCount);
                work.Sequence = new GenerationSequence(work.Slot, _tokenizer, work.Prompt, work.Options, work.OnText, work.Cancel);
            }
            catch (Exception e)
            {
                Release(work, e);
                continue;
            }
            lock (_gate) _active.Add(work);
            Volatile.Write(ref _activeCount, _active.Count);
        }
    }

    private void Release(Work work, Exception? error)
    {
        if (work.Slot != null)
        {
            _batch.Remove(work.Slot);
            work.Slot = null;
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
        _batch.Dispose();
        _pool.Dispose();
    }
}
