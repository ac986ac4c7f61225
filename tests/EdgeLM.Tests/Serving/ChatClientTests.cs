using System.Text;
using EdgeLM.Inference;
using EdgeLM.Serving;
using Microsoft.Extensions.AI;
using TemplateMessage = EdgeLM.Tokenization.ChatMessage;

namespace EdgeLM.Tests.Serving;

public class ChatClientTests(ServingFixture fx) : IClassFixture<ServingFixture>
{
    [Fact]
    public async Task StreamsTheSameTextAsTheGeneratorWithTheSameSeed()
    {
        var expected = fx.Generate(fx.ChatPrompt(new TemplateMessage("user", "tell me")), new GenerationOptions
        {
            MaxNewTokens = 25,
            Sampling = new SamplingOptions { Temperature = 1.2f, TopP = 0.9f, TopK = 20, Seed = 77 },
        });
        using IChatClient client = new EdgeLmChatClient(fx.Model, fx.Tokenizer, ServingFixture.Context, threads: 1);
        var options = new ChatOptions { Temperature = 1.2f, TopP = 0.9f, TopK = 20, Seed = 77, MaxOutputTokens = 25 };

        var text = new StringBuilder();
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "tell me")], options))
        {
            text.Append(u.Text);
            updates.Add(u);
        }
        Assert.Equal(expected.Text, text.ToString());
        var response = updates.ToChatResponse();
        Assert.Equal(expected.Result.GeneratedTokens, response.Usage?.OutputTokenCount);
        Assert.Equal(expected.Result.PromptTokens, response.Usage?.InputTokenCount);
        Assert.Equal(expected.Result.Finish == FinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);

        var whole = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "tell me")], options);
        Assert.Equal(expected.Text, whole.Text);
        Assert.Equal(expected.Result.PromptTokens + expected.Result.GeneratedTokens, whole.Usage?.TotalTokenCount);
        Assert.Equal(ChatRole.Assistant, whole.Messages[0].Role);
    }

    [Fact]
    public async Task StopSequencesAndLimitsAreMapped()
    {
        using var client = new EdgeLmChatClient(fx.Model, fx.Tokenizer, 64, threads: 1);
        var tooMany = new ChatOptions { MaxOutputTokens = 1000 };
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "x")], tooMany));
        var three = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "x")], new ChatOptions { MaxOutputTokens = 3, Seed = 1 });
        Assert.True(three.Usage?.OutputTokenCount <= 3);
        Assert.NotNull(client.GetService<ChatClientMetadata>());
    }
}
