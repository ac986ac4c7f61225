using System.Text;

namespace EdgeLM.Tokenization;

/// <summary>One chat turn. Role is "system", "user", "assistant" or "tool".</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// Renders conversations in Qwen's ChatML, matching the output of the models' Jinja chat templates for plain
/// conversations (no tool definitions): <c>&lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n</c> per message.
/// </summary>
/// <remarks>
/// Qwen2.5's template adds a default system prompt when the first message is not a system message; this is done
/// when the given template contains that prompt, or (Qwen2, Qwen v1's ChatML) renders a literal
/// <c>'&lt;|im_start|&gt;system\n...&lt;|im_end|&gt;'</c> default. Qwen3's enable_thinking=false is rendered as its
/// template does: an empty <c>&lt;think&gt;\n\n&lt;/think&gt;\n\n</c> after the generation prompt. Consecutive "tool" messages are grouped into one user turn of
/// &lt;tool_response&gt; blocks, as Qwen2.5's and Qwen3's templates do. Not reproduced: tool definitions and
/// assistant tool_calls, and Qwen3's rewriting of &lt;think&gt; blocks in assistant history.
/// </remarks>
public static class ChatFormat
{
    public const string Qwen25DefaultSystemPrompt = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

    /// <summary>Qwen-Chat's (v1) and Qwen2-Instruct's default system prompt.</summary>
    public const string QwenDefaultSystemPrompt = "You are a helpful assistant.";

    /// <summary>What Qwen3's template appends to the generation prompt when enable_thinking is false.</summary>
    public const string EmptyThinkBlock = "<think>\n\n</think>\n\n";

    /// <summary>Renders with the tokenizer's chat template deciding the default system prompt.</summary>
    /// <param name="enableThinking">False renders Qwen3's enable_thinking=false (an empty think block after the
    /// generation prompt); true, the default, adds nothing, as Qwen3's template does.</param>
    public static string Render(BpeTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, bool enableThinking = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return Render(messages, addGenerationPrompt, tokenizer.ChatTemplate, enableThinking);
    }

    /// <summary>Renders <paramref name="messages"/>; <paramref name="chatTemplate"/> (may be null) only decides which
    /// default system prompt, if any, is inserted.</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, string? chatTemplate = null, bool enableThinking = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var sb = new StringBuilder();
        bool firstIsSystem = messages.Count > 0 && messages[0]?.Role == "system";
        if (!firstIsSystem && DefaultSystemPrompt(chatTemplate) is { } defaultSystem)
            AppendTurn(sb, "system", defaultSystem);

        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage message = messages[i] ?? throw new ArgumentException($"chat message {i} is null", nameof(messages));
            ArgumentNullException.ThrowIfNull(message.Role);
            ArgumentNullException.ThrowIfNull(message.Content);
            if (message.Role == "tool")
            {
                if (i == 0 || messages[i - 1].Role != "tool") sb.Append("<|im_start|>user");
                sb.Append("\n<tool_response>\n").Append(message.Content).Append("\n</tool_response>");
                if (i == messages.Count - 1 || messages[i + 1].Role != "tool") sb.Append("<|im_end|>\n");
            }
            else
            {
                AppendTurn(sb, message.Role, message.Content);
            }
        }
        if (addGenerationPrompt)
        {
            sb.Append("<|im_start|>assistant\n");
            if (!enableThinking) sb.Append(EmptyThinkBlock);
        }
        return sb.ToString();
    }

    /// <summary>
    /// The system prompt a template inserts when the conversation has none: Qwen2.5's, or a literal
    /// '&lt;|im_start|&gt;system\n{text}&lt;|im_end|&gt;' string in the template (Qwen2, Qwen v1); null otherwise
    /// (Qwen3's template only renders a given system message).
    /// </summary>
    public static string? DefaultSystemPrompt(string? chatTemplate)
    {
        if (chatTemplate is null) return null;
        if (chatTemplate.Contains(Qwen25DefaultSystemPrompt, StringComparison.Ordinal)) return Qwen25DefaultSystemPrompt;
        // Inside a Jinja string literal the newline is written as the two characters backslash, n.
        const string Start = "<|im_start|>system\\n", End = "<|im_end|>";
        for (int at = chatTemplate.IndexOf(Start, StringComparison.Ordinal); at >= 0; at = chatTemplate.IndexOf(Start, at + 1, StringComparison.Ordinal))
        {
            int from = at + Start.Length;
            int end = chatTemplate.IndexOf(End, from, StringComparison.Ordinal);
            if (end < 0) break;
            string text = chatTemplate[from..end];
            // A quote or brace means the text is template code (a variable), not a literal default.
            if (text.Length > 0 && text.IndexOfAny(['\'', '"', '{', '}', '\\']) < 0) return text;
        }
        return null;
    }

    private static void AppendTurn(StringBuilder sb, string role, string content) =>
        sb.Append("<|im_start|>").Append(role).Append('\n').Append(content).Append("<|im_end|>\n");
}
