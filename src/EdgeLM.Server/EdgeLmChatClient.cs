using System.Runtime.CompilerServices;
using System.Threading.Channels;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tokenization;
using Microsoft.Extensions.AI;
using AiChatMessage = Microsoft.Extensions.AI.ChatMessage;
using TemplateMessage = EdgeLM.Tokenization.ChatMessage;

namespace EdgeLM.Serving;

/// <summary>
/// <see cref="IChatClient"/> (Microsoft.Extensions.AI) over a loaded model, in process. Calls are served one at a time
/// on the client's own session; for many concurrent users run <c>edgelm serve</c> and an OpenAI client instead.
/// </summary>
public sealed class EdgeLmChatClient : IChatClient
{
    private readonly LoadedModel _model;
    private readonly BpeTokenizer _tokenizer;
    private readonly InferenceSession _session;
    private readonly SemaphoreSlim _turn = new(1, 1);
    private readonly ChatClientMetadata _metadata;

    /// <param name="contextLength">0: min(model, 4096).</param>
    /// <param name="threads">0: all cores.</param>
    public EdgeLmChatClient(LoadedModel model, BpeTokenizer tokenizer, int contextLength = 0, int threads = 0, string? modelId = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        _model = model;
        _tokenizer = tokenizer;
        _session = new InferenceSession(model.Config, model.Weights, contextLength, threads);
        ModelId = modelId ?? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(model.SourcePath));
        _metadata = new ChatClientMetadata("edgelm", null, ModelId);
    }

    public string ModelId { get; }

    /// <summary>Sampling used where <see cref="ChatOptions"/> leaves a setting unset.</summary>
    public SamplingOptions DefaultSampling { get; init; } = new();

    /// <summary>False renders Qwen3's enable_thinking=false.</summary>
    public bool EnableThinking { get; init; } = true;

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var (prompt, generation) = Prepare(messages, options);
        var text = new System.Text.StringBuilder();
        var result = await RunAsync(prompt, generation, piece => text.Append(piece), cancellationToken).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        return new ChatResponse(new AiChatMessage(ChatRole.Assistant, text.ToString()))
        {
            ModelId = ModelId,
            ResponseId = "chatcmpl-" + Guid.NewGuid().ToString("N"),
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = FinishReasonOf(result.Finish),
            Usage = UsageOf(result),
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<AiChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var (prompt, generation) = Prepare(messages, options);
        string responseId = "chatcmpl-" + Guid.NewGuid().ToString("N");
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var run = RunAsync(prompt, generation, piece => pieces.Writer.TryWrite(piece), cancellationToken);
        _ = run.ContinueWith(_ => pieces.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        await foreach (var piece in pieces.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ResponseId = responseId, ModelId = ModelId };
        var result = await run.ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        yield return new ChatResponseUpdate
        {
            Role = ChatRole.Assistant,
            ResponseId = responseId,
            ModelId = ModelId,
            FinishReason = FinishReasonOf(result.Finish),
            Contents = [new UsageContent(UsageOf(result))],
        };
    }

    private (int[] Prompt, GenerationOptions Options) Prepare(IEnumerable<AiChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var rendered = new List<TemplateMessage>();
        foreach (var m in messages) rendered.Add(new TemplateMessage(m.Role.Value, m.Text));
        if (rendered.Count == 0) throw new ArgumentException("there are no messages to answer");
        string text = ChatFormat.Render(_tokenizer, rendered, addGenerationPrompt: true, enableThinking: EnableThinking);
        int[] ids = _tokenizer.Encode(text);
        if (_tokenizer.AddBos && _tokenizer.BosId is int bos) ids = [bos, .. ids];
        int room = _session.ContextLength - ids.Length;
        if (room < 1) throw new ArgumentException($"the conversation has {ids.Length} tokens, which leaves no room in the context of {_session.ContextLength} tokens");
        if (options?.MaxOutputTokens is int max && (max < 1 || max > room))
            throw new ArgumentException($"MaxOutputTokens must be between 1 and {room} (the context's room after the prompt), got {max}");
        var sampling = DefaultSampling with
        {
            Temperature = options?.Temperature ?? DefaultSampling.Temperature,
            TopP = options?.TopP ?? DefaultSampling.TopP,
            TopK = options?.TopK ?? DefaultSampling.TopK,
            Seed = options?.Seed is long seed ? unchecked((ulong)seed) : DefaultSampling.Seed,
        };
        sampling.Validate();
        return (ids, new GenerationOptions
        {
            MaxNewTokens = options?.MaxOutputTokens ?? room,
            Sampling = sampling,
            StopStrings = options?.StopSequences is { } stops ? [.. stops.Where(s => s.Length > 0)] : [],
        });
    }

    private async Task<GenerationResult> RunAsync(int[] prompt, GenerationOptions options, Action<string> onText, CancellationToken cancel)
    {
        await _turn.WaitAsync(cancel).ConfigureAwait(false);
        try
        {
            return await Task.Factory.StartNew(() =>
            {
                _session.Reset();
                return new Generator(_session, _tokenizer).Generate(prompt, options, onText, cancel);
            }, cancel, TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
        }
        finally { _turn.Release(); }
    }

    private static ChatFinishReason FinishReasonOf(FinishReason finish) => finish switch
    {
        FinishReason.Length or FinishReason.ContextFull => ChatFinishReason.Length,
        _ => ChatFinishReason.Stop,
    };

    private static UsageDetails UsageOf(GenerationResult r) => new()
    {
        InputTokenCount = r.PromptTokens,
        OutputTokenCount = r.GeneratedTokens,
        TotalTokenCount = r.PromptTokens + r.GeneratedTokens,
    };

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey != null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(LoadedModel)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        _turn.Wait();
        _session.Dispose();
        _turn.Dispose();
    }
}
