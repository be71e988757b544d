"""A hand-written library for Gripper: the learning benchmark's control (what a weak agent gains from good actions
at all). Imported with `learnact actions import`, checked and validated like learned actions."""


def carry(ball, from_room, to_room, gripper):
    """Pick a ball up in one room with a free gripper, carry it to another room and drop it there.

    Example: carry('ball1', 'rooma', 'roomb', 'left')
    """
    pick(ball, from_room, gripper)
    move(from_room, to_room)
    drop(ball, to_room, gripper)


def carry_two(first, second, from_room, to_room):
    """Carry two balls at once from one room to another, one in each gripper (both must be free).

    Example: carry_two('ball1', 'ball2', 'rooma', 'roomb')
    """
    pick(first, from_room, "left")
    pick(second, from_room, "right")
    move(from_room, to_room)
    drop(first, to_room, "left")
    drop(second, to_room, "right")
