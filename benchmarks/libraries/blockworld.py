"""A hand-written library for Blocksworld: the learning benchmark's control (what a weak agent gains from good
actions at all). Imported with `learnact actions import`, checked and validated like learned actions."""


def move_block(block, source, destination):
    """Move a clear block from where it lies (another block, or 'table') onto another clear block or the table.

    Example: move_block('b2', 'b1', 'table')
    """
    if source == "table":
        Pickup(block)
    else:
        Unstack(block, source)
    if destination == "table":
        Putdown(block)
    else:
        Stack(block, destination)


def clear_tower(blocks):
    """Put every block of a tower on the table, top block first; give the tower from top to bottom.

    Example: clear_tower(['b3', 'b2', 'b1'])
    """
    for upper, lower in zip(blocks, blocks[1:]):
        Unstack(upper, lower)
        Putdown(upper)


def build_tower(blocks):
    """Stack blocks that lie clear on the table into one tower; give the tower from bottom to top.

    Example: build_tower(['b1', 'b2', 'b3'])
    """
    for lower, upper in zip(blocks, blocks[1:]):
        Pickup(upper)
        Stack(upper, lower)
