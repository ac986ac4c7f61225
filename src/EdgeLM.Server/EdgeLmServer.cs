using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Threading.Channels;
using EdgeLM.Inference;
using EdgeLM.Models;
using EdgeLM.Tokenization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace EdgeLM.Serving;

public sealed record ServerOptions
{
    /// <summary>Loopback unless the operator asks for more.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>Sequences decoded together in one batch (each with its own KV cache); more requests wait in the queue.</summary>
    public int Parallel { get; init; } = 4;
    /// <summary>Tokens per sequence (prompt + answer); 0: min(model, 4096).</summary>
    public int ContextLength { get; init; }
    /// <summary>Worker threads of the shared pool; 0: all cores.</summary>
    public int Threads { get; init; }
    /// <summary>Requests that may wait for a slot before new ones get 429.</summary>
    public int MaxQueue { get; init; } = 64;
    /// <summary>When set, /v1/* needs "Authorization: Bearer KEY".</summary>
    public string? ApiKey { get; init; }
    /// <summary>The id /v1/models lists and requests may name; null: the model file's name.</summary>
    public string? ModelId { get; init; }
    /// <summary>
    /// Qwen3's enable_thinking for requests that do not set it (`edgelm serve --no-think` makes it false). Models whose
    /// chat template has no thinking switch ignore it, like the per-request setting.
    /// </summary>
    public bool EnableThinking { get; init; } = true;
    /// <summary>With no request for this long, the KV caches of a past burst are freed (they come back on demand).</summary>
    public TimeSpan IdleCacheRelease { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Replaces the <see cref="BatchedStepper"/> (a test's, to hold steps back).</summary>
    public ISequenceStepper? Stepper { get; init; }
}

/// <summary>
/// An OpenAI-compatible HTTP server over one loaded model: /v1/models, /v1/chat/completions, /v1/completions,
/// /health and /metrics, on Kestrel with minimal APIs (slim builder, source-generated JSON: NativeAOT-safe).
/// </summary>
public sealed class EdgeLmServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly LoadedModel _model;
    private readonly BpeTokenizer _tokenizer;
    private readonly ServerOptions _options;
    private readonly byte[]? _apiKeyHash;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public SequenceScheduler Scheduler { get; }
    public ServerMetrics Metrics { get; } = new();
    public string ModelId { get; }

    public EdgeLmServer(LoadedModel model, BpeTokenizer tokenizer, ServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Port is < 0 or > 65535) throw new ArgumentException($"port must be between 0 and 65535, got {options.Port}");
        if (!IPAddress.TryParse(options.Host, out var address) && options.Host != "localhost")
            throw new ArgumentException($"--host must be an IP address or localhost, got '{options.Host}'");
        _model = model;
        _tokenizer = tokenizer;
        _options = options;
        ModelId = options.ModelId ?? Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(model.SourcePath));
        if (!string.IsNullOrEmpty(options.ApiKey)) _apiKeyHash = SHA256.HashData(Encoding.UTF8.GetBytes(options.ApiKey));
        int ctx = options.ContextLength > 0 ? options.ContextLength : Math.Min(model.Config.ContextLength, InferenceSession.DefaultMaxContext);
        Scheduler = new SequenceScheduler(model, tokenizer, options.Parallel, ctx, options.Threads, options.MaxQueue, options.Stepper)
        {
            IdleCacheRelease = options.IdleCacheRelease,
        };

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            if (address != null) k.Listen(address, options.Port);
            else k.ListenLocalhost(options.Port);
        });
        _app = builder.Build();
        _app.Use(Guard);
        _app.MapGet("/health", (RequestDelegate)Health);
        _app.MapGet("/metrics", (RequestDelegate)MetricsText);
        _app.MapGet("/v1/models", (RequestDelegate)Models);
        _app.MapPost("/v1/chat/completions", (RequestDelegate)ChatCompletions);
        _app.MapPost("/v1/completions", (RequestDelegate)Completions);
    }

    /// <summary>The address Kestrel listens on, e.g. http://127.0.0.1:8080 (valid after <see cref="StartAsync"/>).</summary>
    public Uri BaseAddress => new(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    public Task StartAsync(CancellationToken cancel = default) => _app.StartAsync(cancel);

    public Task WaitForShutdownAsync(CancellationToken cancel) => _app.WaitForShutdownAsync(cancel);

    public async ValueTask DisposeAsync()
    {
        try { await _app.StopAsync(); } catch (OperationCanceledException) { }
        await _app.DisposeAsync();
        Scheduler.Dispose();
    }

    private sealed class ApiException(int status, string message, string type, string? param = null, string? code = null) : Exception(message)
    {
        public int Status { get; } = status;
        public string Type { get; } = type;
        public string? Param { get; } = param;
        public string? Code { get; } = code;
    }

    /// <summary>Authentication, error JSON for everything a handler throws, and per-endpoint request counts.</summary>
    private async Task Guard(HttpContext ctx, RequestDelegate next)
    {
        string path = ctx.Request.Path.Value ?? "";
        try
        {
            if (_apiKeyHash != null && path.StartsWith("/v1/", StringComparison.Ordinal) && !Authorized(ctx.Request))
                throw new ApiException(401, "invalid or missing API key: send it as 'Authorization: Bearer KEY'", "invalid_request_error", code: "invalid_api_key");
            await next(ctx);
        }
        catch (ApiException e) when (!ctx.Response.HasStarted)
        {
            await WriteError(ctx, e.Status, e.Message, e.Type, e.Param, e.Code);
        }
        catch (QueueFullException e) when (!ctx.Response.HasStarted)
        {
            await WriteError(ctx, 429, e.Message, "server_busy", code: "queue_full");
        }
        catch (ArgumentException e) when (!ctx.Response.HasStarted)
        {
            await WriteError(ctx, 400, e.Message, "invalid_request_error");
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            // The client went away; its sequence was cancelled and there is nobody to answer.
        }
        catch (Exception e) when (!ctx.Response.HasStarted && e is not OutOfMemoryException)
        {
            await WriteError(ctx, 500, "internal error: " + e.Message.ReplaceLineEndings(" "), "server_error");
        }
        finally
        {
            string endpoint = path is "/health" or "/metrics" or "/v1/models" or "/v1/chat/completions" or "/v1/completions" ? path : "other";
            Metrics.CountRequest(endpoint, ctx.Response.StatusCode);
        }
    }

    private bool Authorized(HttpRequest request)
    {
        string header = request.Headers.Authorization.ToString();
        const string prefix = "Bearer ";
        if (!header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return false;
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(header[prefix.Length..].Trim()));
        return CryptographicOperations.FixedTimeEquals(hash, _apiKeyHash);
    }

    private static Task WriteError(HttpContext ctx, int status, string message, string type, string? param = null, string? code = null)
    {
        ctx.Response.StatusCode = status;
        return WriteJson(ctx, new ErrorResponse(new ErrorBody(message, type, param, code)), ServerJsonContext.Default.ErrorResponse);
    }

    private static async Task WriteJson<T>(HttpContext ctx, T value, JsonTypeInfo<T> type)
    {
        ctx.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(ctx.Response.Body, value, type, ctx.RequestAborted);
    }

    private Task Health(HttpContext ctx) =>
        WriteJson(ctx, new HealthResponse("ok", ModelId, Scheduler.ActiveCount, Scheduler.QueueLength), ServerJsonContext.Default.HealthResponse);

    private Task MetricsText(HttpContext ctx)
    {
        ctx.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        return ctx.Response.WriteAsync(Metrics.Render(Scheduler), ctx.RequestAborted);
    }

    private Task Models(HttpContext ctx) =>
        WriteJson(ctx, new ModelList("list", [new ModelInfo(ModelId, "model", _created, "edgelm")]), ServerJsonContext.Default.ModelList);

    private static async Task<T> ReadBody<T>(HttpContext ctx, JsonTypeInfo<T> type) where T : class
    {
        try
        {
            return await JsonSerializer.DeserializeAsync(ctx.Request.Body, type, ctx.RequestAborted)
                ?? throw new ApiException(400, "the request body is empty or null", "invalid_request_error");
        }
        catch (JsonException e)
        {
            throw new ApiException(400, "malformed JSON in the request body: " + e.Message.ReplaceLineEndings(" "), "invalid_request_error");
        }
    }

    private void CheckModel(string? model)
    {
        // Clients must name a model, but any name of this one is accepted: the id, or the file it came from.
        if (model == null) throw new ApiException(400, "'model' is required", "invalid_request_error", "model");
        if (model != ModelId && model != Path.GetFileName(_model.SourcePath))
            throw new ApiException(404, $"the model '{model}' does not exist (this server has '{ModelId}')", "invalid_request_error", "model", "model_not_found");
    }

    private async Task ChatCompletions(HttpContext ctx)
    {
        var request = await ReadBody(ctx, ServerJsonContext.Default.ChatCompletionRequest);
        CheckModel(request.Model);
        if (request.Messages is not { Count: > 0 })
            throw new ApiException(400, "'messages' must be a non-empty array", "invalid_request_error", "messages");
        var messages = new List<ChatMessage>(request.Messages.Count);
        foreach (var m in request.Messages)
        {
            if (m.Role is not ("system" or "user" or "assistant" or "developer" or "tool"))
                throw new ApiException(400, $"unsupported message role '{m.Role}'", "invalid_request_error", "messages");
            messages.Add(new ChatMessage(m.Role == "developer" ? "system" : m.Role, ContentText(m.Content)));
        }
        string prompt = ChatFormat.Render(_tokenizer, messages, addGenerationPrompt: true, enableThinking: EnableThinking(request));
        int[] ids = Tokenize(prompt);
        var options = Options(ids.Length, request, request.MaxCompletionTokens ?? request.MaxTokens);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        if (request.Stream == true)
        {
            await Stream(ctx, ids, options,
                first: new ChatCompletionChunk(id, "chat.completion.chunk", created, ModelId, [new ChatChunkChoice(0, new ChunkDelta("assistant", ""), null)], null),
                piece => new ChatCompletionChunk(id, "chat.completion.chunk", created, ModelId, [new ChatChunkChoice(0, new ChunkDelta(null, piece), null)], null),
                result => new ChatCompletionChunk(id, "chat.completion.chunk", created, ModelId,
                    [new ChatChunkChoice(0, new ChunkDelta(null, null), FinishReasonName(result.Finish))], UsageOf(result)),
                ServerJsonContext.Default.ChatCompletionChunk);
            return;
        }
        var (text, r) = await Generate(ctx, ids, options);
        await WriteJson(ctx, new ChatCompletionResponse(id, "chat.completion", created, ModelId,
            [new ChatChoice(0, new ResponseMessage("assistant", text), FinishReasonName(r.Finish))], UsageOf(r)),
            ServerJsonContext.Default.ChatCompletionResponse);
    }

    /// <summary>
    /// enable_thinking for one request: chat_template_kwargs.enable_thinking (vLLM, SGLang), else the top-level
    /// enable_thinking, else the server default. Templates without the switch (Qwen2.5, Qwen v1, none) always get
    /// true, so clients that send it to every model work unchanged.
    /// </summary>
    private bool EnableThinking(ChatCompletionRequest request)
    {
        bool? requested = request.EnableThinking;
        var kwargs = request.ChatTemplateKwargs;
        if (kwargs.ValueKind == JsonValueKind.Object)
        {
            if (kwargs.TryGetProperty("enable_thinking", out var value))
                requested = value.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    JsonValueKind.Null => requested,
                    _ => throw new ApiException(400, "'chat_template_kwargs.enable_thinking' must be a boolean", "invalid_request_error", "chat_template_kwargs"),
                };
        }
        else if (kwargs.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
            throw new ApiException(400, "'chat_template_kwargs' must be an object", "invalid_request_error", "chat_template_kwargs");
        return !TemplateHasThinkingSwitch || (requested ?? _options.EnableThinking);
    }

    /// <summary>Whether the model's chat template reads enable_thinking (Qwen3's does).</summary>
    public bool TemplateHasThinkingSwitch =>
        _tokenizer.ChatTemplate?.Contains("enable_thinking", StringComparison.Ordinal) == true;

    private async Task Completions(HttpContext ctx)
    {
        var request = await ReadBody(ctx, ServerJsonContext.Default.CompletionRequest);
        CheckModel(request.Model);
        string prompt = request.Prompt.ValueKind switch
        {
            JsonValueKind.String => request.Prompt.GetString()!,
            JsonValueKind.Array when request.Prompt.GetArrayLength() == 1 && request.Prompt[0].ValueKind == JsonValueKind.String => request.Prompt[0].GetString()!,
            _ => throw new ApiException(400, "'prompt' must be a string", "invalid_request_error", "prompt"),
        };
        int[] ids = Tokenize(prompt);
        var options = Options(ids.Length, request, request.MaxTokens);
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        if (request.Stream == true)
        {
            await Stream(ctx, ids, options, first: null,
                piece => new CompletionResponse(id, "text_completion", created, ModelId, [new CompletionChoice(0, piece, null, null)], null),
                result => new CompletionResponse(id, "text_completion", created, ModelId,
                    [new CompletionChoice(0, "", null, FinishReasonName(result.Finish))], UsageOf(result)),
                ServerJsonContext.Default.CompletionResponse);
            return;
        }
        var (text, r) = await Generate(ctx, ids, options);
        await WriteJson(ctx, new CompletionResponse(id, "text_completion", created, ModelId,
            [new CompletionChoice(0, text, null, FinishReasonName(r.Finish))], UsageOf(r)), ServerJsonContext.Default.CompletionResponse);
    }

    private static string ContentText(JsonElement content)
    {
        switch (content.ValueKind)
        {
            case JsonValueKind.String: return content.GetString()!;
            case JsonValueKind.Null or JsonValueKind.Undefined: return "";
            case JsonValueKind.Array:
                var sb = new StringBuilder();
                foreach (var part in content.EnumerateArray())
                {
                    if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
                        throw new ApiException(400, "every content part needs a 'type'", "invalid_request_error", "messages");
                    if (t.GetString() != "text" || !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                        throw new ApiException(400, $"unsupported content part '{t.GetString()}': this model reads text only", "invalid_request_error", "messages");
                    sb.Append(text.GetString());
                }
                return sb.ToString();
            default: throw new ApiException(400, "message content must be a string or an array of text parts", "invalid_request_error", "messages");
        }
    }

    private int[] Tokenize(string prompt)
    {
        int[] ids = _tokenizer.Encode(prompt);
        if (_tokenizer.AddBos && _tokenizer.BosId is int bos) ids = [bos, .. ids];
        if (ids.Length == 0) throw new ApiException(400, "the prompt is empty", "invalid_request_error", "prompt");
        int ctx = Scheduler.ContextLength;
        if (ids.Length >= ctx)
            throw new ApiException(400, $"the prompt has {ids.Length} tokens, which leaves no room in the context of {ctx} tokens",
                "invalid_request_error", "messages", "context_length_exceeded");
        return ids;
    }

    private GenerationOptions Options(int promptTokens, GenerationRequest request, int? maxTokens)
    {
        int room = Scheduler.ContextLength - promptTokens;
        if (maxTokens is < 1)
            throw new ApiException(400, $"max_tokens must be at least 1, got {maxTokens}", "invalid_request_error", "max_tokens");
        if (maxTokens > room)
            throw new ApiException(400, $"max_tokens of {maxTokens} plus the prompt's {promptTokens} tokens exceeds the context of {Scheduler.ContextLength} tokens",
                "invalid_request_error", "max_tokens", "context_length_exceeded");
        var defaults = new SamplingOptions();
        var sampling = new SamplingOptions
        {
            Temperature = request.Temperature ?? defaults.Temperature,
            TopP = request.TopP ?? defaults.TopP,
            TopK = request.TopK ?? defaults.TopK,
            MinP = request.MinP ?? defaults.MinP,
            RepetitionPenalty = request.RepetitionPenalty ?? defaults.RepetitionPenalty,
            Seed = request.Seed is long s ? unchecked((ulong)s) : null,
        };
        try { sampling.Validate(); }
        catch (ArgumentException e) { throw new ApiException(400, e.Message, "invalid_request_error"); }
        return new GenerationOptions { MaxNewTokens = maxTokens ?? room, Sampling = sampling, StopStrings = StopStrings(request.Stop) };
    }

    private static List<string> StopStrings(JsonElement stop)
    {
        switch (stop.ValueKind)
        {
            case JsonValueKind.Undefined or JsonValueKind.Null: return [];
            case JsonValueKind.String: return stop.GetString() is { Length: > 0 } one ? [one] : [];
            case JsonValueKind.Array:
                var list = new List<string>();
                foreach (var e in stop.EnumerateArray())
                {
                    if (e.ValueKind != JsonValueKind.String) throw new ApiException(400, "'stop' must be a string or an array of strings", "invalid_request_error", "stop");
                    if (e.GetString() is { Length: > 0 } s) list.Add(s);
                }
                if (list.Count > 16) throw new ApiException(400, "at most 16 stop sequences", "invalid_request_error", "stop");
                return list;
            default: throw new ApiException(400, "'stop' must be a string or an array of strings", "invalid_request_error", "stop");
        }
    }

    private async Task<(string Text, GenerationResult Result)> Generate(HttpContext ctx, int[] ids, GenerationOptions options)
    {
        var text = new StringBuilder();
        var result = await Scheduler.SubmitAsync(ids, options, piece => text.Append(piece), ctx.RequestAborted);
        ctx.RequestAborted.ThrowIfCancellationRequested();
        return (text.ToString(), result);
    }

    private async Task Stream<T>(HttpContext ctx, int[] ids, GenerationOptions options, T? first, Func<string, T> chunk,
        Func<GenerationResult, T> last, JsonTypeInfo<T> type) where T : class
    {
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var generation = Scheduler.SubmitAsync(ids, options, piece => pieces.Writer.TryWrite(piece), ctx.RequestAborted);
        _ = generation.ContinueWith(_ => pieces.Writer.TryComplete(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        if (first != null) await WriteEvent(ctx, first, type);
        else await ctx.Response.StartAsync(ctx.RequestAborted);
        await foreach (var piece in pieces.Reader.ReadAllAsync(ctx.RequestAborted))
            await WriteEvent(ctx, chunk(piece), type);
        var result = await generation;
        ctx.RequestAborted.ThrowIfCancellationRequested();
        await WriteEvent(ctx, last(result), type);
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
    }

    private static async Task WriteEvent<T>(HttpContext ctx, T value, JsonTypeInfo<T> type)
    {
        var body = ctx.Response.Body;
        await body.WriteAsync("data: "u8.ToArray(), ctx.RequestAborted);
        await JsonSerializer.SerializeAsync(body, value, type, ctx.RequestAborted);
        await body.WriteAsync("\n\n"u8.ToArray(), ctx.RequestAborted);
        await body.FlushAsync(ctx.RequestAborted);
    }

    private static Usage UsageOf(GenerationResult r) => new(r.PromptTokens, r.GeneratedTokens, r.PromptTokens + r.GeneratedTokens);

    /// <summary>OpenAI has two reasons: "length" when the token budget or the context ran out, "stop" otherwise.</summary>
    public static string FinishReasonName(FinishReason finish) => finish is FinishReason.Length or FinishReason.ContextFull ? "length" : "stop";
}
