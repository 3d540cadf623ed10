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
    public static IReadOnlyList<string> Of(Task task)
    {
        var names = new List<string>();
        for (Task? current = task; current is { IsCompleted: false } && StateMachineOf(current) is { } machine; current = AwaitedTask(machine))
        {
            names.Add(MethodName(machine.GetType()));
        }

        if (names.Count == 0)
        {
            throw new InvalidOperationException($"{task.GetType()} is not a waiting async method's task (a wrapper task, or the runtime's shapes changed)");
        }

        return names;
    }

    private static object? StateMachineOf(Task task) =>
        task.GetType().GetField("StateMachine", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)?.GetValue(task);

    /// <summary>The unfinished task one of the state machine's awaiters holds (<c>&lt;&gt;u__N</c> fields), if any.</summary>
    private static Task? AwaitedTask(object machine)
    {
        foreach (FieldInfo field in machine.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            if (field.Name.StartsWith("<>u__", StringComparison.Ordinal) && TaskIn(field.GetValue(machine), depth: 0) is { IsCompleted: false } awaited)
            {
                return awaited;
            }
        }

        return null;
    }

    /// <summary>A task inside an awaiter (TaskAwaiter's m_task, a ConfiguredValueTaskAwaiter's ValueTask's _obj, ...).</summary>
    private static Task? TaskIn(object? value, int depth)
    {
        if (value is Task task)
        {
            return task;
        }

        if (value is null || depth > 3 || !value.GetType().IsValueType)
        {
            return null;
        }

        foreach (FieldInfo field in value.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
        {
            if (TaskIn(field.GetValue(value), depth + 1) is { IsCompleted: false } inner)
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
