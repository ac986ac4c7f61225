using System.Text.Json;
using System.Text.Json.Serialization;

namespace EdgeLM.Serving;

// The OpenAI wire format (snake_case), read and written only through the source-generated ServerJsonContext so the
// server stays trimming- and NativeAOT-safe.

/// <summary>The sampling fields /v1/chat/completions and /v1/completions share.</summary>
public abstract class GenerationRequest
{
    public string? Model { get; set; }
    public float? Temperature { get; set; }
    public float? TopP { get; set; }
    public int? TopK { get; set; }
    public float? MinP { get; set; }
    public float? RepetitionPenalty { get; set; }
    public int? MaxTokens { get; set; }
    /// <summary>A string or an array of strings.</summary>
    public JsonElement Stop { get; set; }
    public long? Seed { get; set; }
    public bool? Stream { get; set; }
}

public sealed class ChatCompletionRequest : GenerationRequest
{
    public List<RequestMessage>? Messages { get; set; }
    public int? MaxCompletionTokens { get; set; }
    /// <summary>Qwen3 chat templates: false answers without a thinking block (also accepted inside chat_template_kwargs).</summary>
    public bool? EnableThinking { get; set; }
    /// <summary>
    /// Variables for the chat template, as vLLM and SGLang accept them: an object whose "enable_thinking" (a boolean)
    /// is used; other keys are ignored, since EdgeLM renders the Qwen templates natively rather than through Jinja.
    /// </summary>
    public JsonElement ChatTemplateKwargs { get; set; }
}

public sealed class RequestMessage
{
    public string? Role { get; set; }
    /// <summary>A string, or an array of content parts of which the "text" ones are used.</summary>
    public JsonElement Content { get; set; }
}

public sealed class CompletionRequest : GenerationRequest
{
    public JsonElement Prompt { get; set; }
}

public sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens);

public sealed record ResponseMessage(string Role, string Content);

public sealed record ChatChoice(int Index, ResponseMessage Message, string FinishReason);

public sealed record ChatCompletionResponse(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChoice> Choices, Usage Usage);

public sealed record ChunkDelta(string? Role, string? Content);

public sealed record ChatChunkChoice(int Index, ChunkDelta Delta, [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason);

public sealed record ChatCompletionChunk(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices, Usage? Usage);

public sealed record CompletionChoice(int Index, string Text,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] object? Logprobs,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? FinishReason);

public sealed record CompletionResponse(string Id, string Object, long Created, string Model, IReadOnlyList<CompletionChoice> Choices, Usage? Usage);

public sealed record ModelInfo(string Id, string Object, long Created, string OwnedBy);

public sealed record ModelList(string Object, IReadOnlyList<ModelInfo> Data);

public sealed record ErrorBody(string Message, string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Param,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] string? Code);

public sealed record ErrorResponse(ErrorBody Error);

public sealed record HealthResponse(string Status, string Model, int ActiveSequences, int QueuedSequences);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(CompletionRequest))]
[JsonSerializable(typeof(ChatCompletionResponse))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(CompletionResponse))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(HealthResponse))]
public sealed partial class ServerJsonContext : JsonSerializerContext;
