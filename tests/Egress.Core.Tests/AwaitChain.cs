using System.Reflection;
using System.Runtime.CompilerServices;

namespace Egress.Tests;

/// <summary>
/// The async methods waiting one inside the other below a running task: what an idle connection holds one state machine
/// each for (issue 15: idle RSS per relayed connection). Read through the runtime's private shapes (an async method's
/// task is its state machine box, whose <c>StateMachine</c> field holds the awaiter of what it waits for); a test fails,
/// rather than passing unseen, if those shapes change.
/// </summary>
internal static class AwaitChain
{
    /// <summary>The names of the async methods waiting from <paramref name="task"/> down, outermost first (e.g.
    /// <c>HandleAsync</c>), down to the first wait that is not an async method's (a socket's receive).</summary>
    public static IReadOnlyList<string> Of(Task task) => [.. MachinesOf(task).Select(machine => MethodName(machine.GetType()))];

    /// <summary>The state machines of <see cref="Of"/>'s methods, outermost first: their hoisted locals (fields named
    /// <c>&lt;name&gt;5__N</c>) are what each holds while it waits.</summary>
    public static IReadOnlyList<object> MachinesOf(Task task)
    {
        var machines = new List<object>();
        for (object? current = task; current is not null and not Task { IsCompleted: true } && StateMachineOf(current) is { } machine; current = Awaited(machine))
        {
            machines.Add(machine);
        }

        if (machines.Count == 0)
        {
            throw new InvalidOperationException($"{task.GetType()} is not a waiting async method's task (a wrapper task, or the runtime's shapes changed)");
        }

        return machines;
    }

    /// <summary>The hoisted local <paramref name="name"/> of <paramref name="machine"/> (a field named
    /// <c>&lt;name&gt;5__N</c>); throws if the method has no such local, so that a test of it cannot pass unseen.</summary>
    public static object? Local(object machine, string name)
    {
        FieldInfo field = machine.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
            .SingleOrDefault(field => field.Name.StartsWith($"<{name}>5__", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"{machine.GetType()} has no hoisted local '{name}'");
        return field.GetValue(machine);
    }

    /// <summary>The state machine an async method's task holds, or a pooled <c>ValueTask</c> method's box
    /// (<see cref="PoolingAsyncValueTaskMethodBuilder{TResult}"/>): both keep it in a field named <c>StateMachine</c>.</summary>
    private static object? StateMachineOf(object waiting) =>
        waiting.GetType().GetField("StateMachine", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)?.GetValue(waiting);

    /// <summary>What one of the state machine's awaiters (<c>&lt;&gt;u__N</c> fields) waits on, if anything: an unfinished
    /// task, or a pooled method's box (an awaiter is cleared when its wait ends, so a box still in one is still awaited).</summary>
    private static object? Awaited(object machine)
    {
        foreach (FieldInfo field in machine.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            if (field.Name.StartsWith("<>u__", StringComparison.Ordinal) && WaitIn(field.GetValue(machine), depth: 0) is { } awaited)
            {
                return awaited;
            }
        }

        return null;
    }

    /// <summary>An unfinished task or a pooled method's box inside an awaiter (TaskAwaiter's m_task, a
    /// ConfiguredValueTaskAwaiter's ValueTask's _obj, ...).</summary>
    private static object? WaitIn(object? value, int depth)
    {
        if (value is Task task)
        {
            return task.IsCompleted ? null : task;
        }

        if (value is null || depth > 3)
        {
            return null;
        }

        if (!value.GetType().IsValueType)
        {
            return StateMachineOf(value) is IAsyncStateMachine ? value : null;
        }

        foreach (FieldInfo field in value.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            if (WaitIn(field.GetValue(value), depth + 1) is { } inner)
            {
                return inner;
            }
        }

        return null;
    }

    /// <summary>"HandleAsync" from the compiler's "&lt;HandleAsync&gt;d__12".</summary>
    private static string MethodName(Type stateMachine)
    {
        string name = stateMachine.Name;
        int open = name.IndexOf('<', StringComparison.Ordinal);
        int close = name.IndexOf('>', StringComparison.Ordinal);
        return stateMachine.GetInterfaces().Contains(typeof(IAsyncStateMachine)) && open >= 0 && close > open
            ? name[(open + 1)..close]
            : throw new InvalidOperationException($"{stateMachine} is not a compiler-made async state machine");
    }
}
