using EdgeLM.Inference;

namespace EdgeLM.Tests.Inference;

public class SessionProfileTests
{
    [Fact]
    public void CountsTokensAndTimesPartsWithoutChangingLogits()
    {
        using var model = new TinyModel(new TinyModelSpec(Layers: 2));
        int[] prompt = model.RandomTokens(5, seed: 3);
        using var plain = new InferenceSession(model.Config, model.Weights, threads: 2);
        float[] expectedPrompt = plain.Forward(prompt).ToArray();
        float[] expectedNext = plain.Forward(prompt.AsSpan(0, 1)).ToArray();

        using var session = new InferenceSession(model.Config, model.Weights, threads: 2);
        var profile = new SessionProfile();
        session.Profile = profile;
        Assert.Equal(expectedPrompt, session.Forward(prompt).ToArray());
        Assert.Equal(expectedNext, session.Forward(prompt.AsSpan(0, 1)).ToArray());

        Assert.Equal(2, profile.Forwards);
        Assert.Equal(6, profile.Tokens);
        Assert.True(profile.Total > TimeSpan.Zero);
        Assert.True(profile.Elapsed(ProfilePart.GateUpMatMul) > TimeSpan.Zero);
        Assert.True(profile.Elapsed(ProfilePart.OutputHead) > TimeSpan.Zero);
        // The top-level parts are disjoint laps of the same calls: together they cannot exceed the total.
        var topLevel = Enum.GetValues<ProfilePart>().Where(p => p is not (ProfilePart.PoolWait or ProfilePart.QuantizeInput));
        Assert.True(topLevel.Sum(p => profile.Elapsed(p).Ticks) <= profile.Total.Ticks);
        Assert.Contains("GateUpMatMul", profile.ToString());

        session.Profile = null;
        profile.Reset();
        session.Forward(prompt.AsSpan(0, 1));
        Assert.Equal(0, profile.Tokens);
        Assert.Equal(TimeSpan.Zero, profile.Elapsed(ProfilePart.QkvMatMul));
    }
}
