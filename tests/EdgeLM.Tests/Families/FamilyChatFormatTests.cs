using EdgeLM.Tokenization;

namespace EdgeLM.Tests.Families;

public sealed class FamilyChatFormatTests
{
    private static readonly ChatMessage[] OneTurn = [new("user", "Hi")];

    // The parts of Qwen3's chat template that decide these renderings (Qwen/Qwen3-0.6B tokenizer_config.json).
    private const string Qwen3TemplateExcerpt =
        "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}{%- endif %}" +
        "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- if enable_thinking is defined and enable_thinking is false %}" +
        "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}";

    [Fact]
    public void Qwen3ThinkingSwitchRendersLikeItsTemplate()
    {
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            ChatFormat.Render(OneTurn, true, Qwen3TemplateExcerpt, enableThinking: true));
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
            ChatFormat.Render(OneTurn, true, Qwen3TemplateExcerpt, enableThinking: false));
        // Nothing is added without a generation prompt.
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n", ChatFormat.Render(OneTurn, false, Qwen3TemplateExcerpt, enableThinking: false));
        Assert.Null(ChatFormat.DefaultSystemPrompt(Qwen3TemplateExcerpt));
    }

    [Fact]
    public void QwenChatGetsItsDefaultSystemPrompt()
    {
        // qwen_generation_utils.make_context with system="You are a helpful assistant." and no history.
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            ChatFormat.Render(OneTurn, true, BpeTokenizer.QwenChatMLTemplate));
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            ChatFormat.Render([new("system", "Be brief."), .. OneTurn], true, BpeTokenizer.QwenChatMLTemplate));
        Assert.Equal(ChatFormat.Qwen25DefaultSystemPrompt,
            ChatFormat.DefaultSystemPrompt("{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"));
        Assert.Null(ChatFormat.DefaultSystemPrompt(null));
    }
}
