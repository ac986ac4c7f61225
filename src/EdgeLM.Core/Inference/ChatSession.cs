using EdgeLM.Tokenization;

namespace EdgeLM.Inference;

/// <summary>
/// A multi-turn conversation over one inference session. Each turn renders the whole conversation with the chat
/// format, keeps the KV cache for the longest token prefix already computed, and feeds only the rest.
/// </summary>
public sealed class ChatSession
{
    private readonly Generator _generator;
    private readonly BpeTokenizer _tokenizer;
    private readonly List<ChatMessage> _messages = [];
    private int[] _cached = [];

    public ChatSession(Generator generator, BpeTokenizer tokenizer, string? systemPrompt = null)
    {
        _generator = generator;
        _tokenizer = tokenizer;
        if (!string.IsNullOrEmpty(systemPrompt)) _messages.Add(new ChatMessage("system", systemPrompt));
    }

    public IReadOnlyList<ChatMessage> Messages => _messages;

    /// <summary>False renders Qwen3's enable_thinking=false (an empty think block opens every reply).</summary>
    public bool EnableThinking { get; init; } = true;

    public GenerationResult Send(string userText, GenerationOptions options, Action<string> onText, CancellationToken cancel = default)
    {
        _messages.Add(new ChatMessage("user", userText));
        string prompt = ChatFormat.Render(_tokenizer, _messages, addGenerationPrompt: true, enableThinking: EnableThinking);
        int[] ids = _tokenizer.Encode(prompt);

        var session = _generator.Session;
        int keep = 0;
        int limit = Math.Min(Math.Min(_cached.Length, ids.Length - 1), session.Position);
        while (keep < limit && _cached[keep] == ids[keep]) keep++;
        session.Truncate(keep);

        var reply = new System.Text.StringBuilder();
        GenerationResult result;
        try
        {
            result = _generator.Generate(ids.AsSpan(keep), options, piece => { reply.Append(piece); onText(piece); }, cancel);
        }
        catch
        {
            _messages.RemoveAt(_messages.Count - 1);
            throw;
        }
        _messages.Add(new ChatMessage("assistant", reply.ToString()));
        _cached = [.. ids, .. result.Tokens];
        return result;
    }
}
