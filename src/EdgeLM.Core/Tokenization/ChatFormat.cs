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
/// when the given template contains that prompt. Consecutive "tool" messages are grouped into one user turn of
/// &lt;tool_response&gt; blocks, as Qwen2.5's and Qwen3's templates do. Not reproduced: tool definitions and
/// assistant tool_calls, and Qwen3's rewriting of &lt;think&gt; blocks in assistant history.
/// </remarks>
public static class ChatFormat
{
    public const string Qwen25DefaultSystemPrompt = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

    /// <summary>Renders with the tokenizer's chat template deciding the default system prompt.</summary>
    public static string Render(BpeTokenizer tokenizer, IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        return Render(messages, addGenerationPrompt, tokenizer.ChatTemplate);
    }

    /// <summary>Renders <paramref name="messages"/>; <paramref name="chatTemplate"/> (may be null) only decides whether
    /// Qwen2.5's default system prompt is inserted.</summary>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, string? chatTemplate = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var sb = new StringBuilder();
        bool firstIsSystem = messages.Count > 0 && messages[0].Role == "system";
        if (!firstIsSystem && chatTemplate != null && chatTemplate.Contains(Qwen25DefaultSystemPrompt, StringComparison.Ordinal))
            AppendTurn(sb, "system", Qwen25DefaultSystemPrompt);

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
        if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
        return sb.ToString();
    }

    private static void AppendTurn(StringBuilder sb, string role, string content) =>
        sb.Append("<|im_start|>").Append(role).Append('\n').Append(content).Append("<|im_end|>\n");
}
