using System.Text.Json;
using EdgeLM.Tests.Support;
using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Tokenization;

public class ChatFormatTests
{
    /// <summary>Chats rendered by a Jinja engine from Qwen2.5's template (tools/tokenizer-vectors), with their ids.</summary>
    [Fact]
    public void MatchesQwen25TemplateRendering()
    {
        string template = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "tools", "tokenizer-vectors", "qwen2.5-chat-template.jinja"));
        int count = 0;
        foreach (string line in File.ReadLines(TestPaths.TestData("tokenizer", "qwen-chat.jsonl")).Where(l => l.Length > 0))
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            Assert.Equal("qwen2.5", root.GetProperty("template").GetString());
            var messages = root.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToList();
            bool addGenerationPrompt = root.GetProperty("add_generation_prompt").GetBoolean();
            string expected = root.GetProperty("text").GetString()!;
            string rendered = ChatFormat.Render(messages, addGenerationPrompt, template);
            Assert.Equal(expected, rendered);
            Assert.Equal(root.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()), QwenTokenizer.Instance.Encode(rendered));
            count++;
        }
        Assert.True(count >= 8);
    }

    [Fact]
    public void Qwen3TemplateHasNoDefaultSystemPrompt()
    {
        // Qwen3's template (the shared tokenizer_config.json) emits plain ChatML for this conversation.
        var messages = new[] { new ChatMessage("user", "Hi"), new ChatMessage("assistant", "Hello"), new ChatMessage("user", "Bye") };
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
            ChatFormat.Render(QwenTokenizer.Instance, messages));
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n", ChatFormat.Render([new ChatMessage("user", "Hi")], addGenerationPrompt: false));
    }

    [Fact]
    public void RejectsNullContent()
    {
        Assert.Throws<ArgumentNullException>(() => ChatFormat.Render([new ChatMessage("user", null!)]));
    }
}
